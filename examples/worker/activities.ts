import type { PaymentRequest } from './workflows.ts';

export async function chargeCard(request: PaymentRequest): Promise<string> {
  return `charged ${request.amountCents} cents to card ending ${request.cardNumber.slice(-4)} for ${request.customer}`;
}
