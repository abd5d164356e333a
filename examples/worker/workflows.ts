import { proxyActivities } from '@temporalio/workflow';
import type * as activities from './activities.ts';

const { chargeCard } = proxyActivities<typeof activities>({ startToCloseTimeout: '1 minute' });

export interface PaymentRequest {
  customer: string;
  cardNumber: string;
  amountCents: number;
}

/** Its input, the activity's arguments and its result are all encrypted in Temporal's history. */
export async function payment(request: PaymentRequest): Promise<string> {
  return await chargeCard(request);
}
