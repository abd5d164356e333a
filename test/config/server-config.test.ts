import { describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { serverConfigInput } from '../../codec-server/serve-command.ts';
import { DEFAULT_BODY_LIMIT, DEV_CORS_ORIGINS, parseServerConfig } from '../../src/config/server-config.ts';
import { InvalidOptionError } from '../../src/errors.ts';

const token = { name: 'ci', sha256: tokenSha256Hex('t'), namespaces: ['*'], operations: ['decode'] as const };

describe('server config', () => {
  it('fills defaults', () => {
    const config = parseServerConfig({ auth: { tokens: [token] } });
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8888,
      pathPrefix: '',
      bodyLimit: DEFAULT_BODY_LIMIT,
      cors: { origins: [], credentials: false },
      metrics: { enabled: true },
      dev: false,
    });
    expect(parseServerConfig({ dev: true }).cors.origins).toEqual([...DEV_CORS_ORIGINS]);
  });

  it.each([
    [{}, 'server.auth: at least one method'],
    [{ dev: true, port: 70000 }, 'server.port'],
    [{ dev: true, pathPrefix: 'codec' }, 'server.pathPrefix'],
    [{ dev: true, pathPrefix: '/codec/' }, 'server.pathPrefix'],
    [{ dev: true, bodyLimit: 100_000 }, 'server.bodyLimit: must be at least 4194304'],
    [{ dev: true, cors: { origins: ['*'] } }, 'server.cors.origins.0'],
    [{ dev: true, cors: { origins: ['null'] } }, 'server.cors.origins.0'],
    [{ dev: true, cors: { origins: ['https://ui.example.com/'] } }, 'server.cors.origins.0'],
    [{ dev: true, cors: { origins: ['*.example.com'] } }, 'server.cors.origins.0'],
    [
      { auth: { jwt: { jwksUrl: 'https://idp/jwks', issuer: 'i', audience: 'a', algorithms: ['HS256'] } } },
      'server.auth.jwt.algorithms.0',
    ],
    [
      { auth: { jwt: { jwksUrl: 'https://idp/jwks', issuer: 'i', audience: 'a', algorithms: ['none'] } } },
      'server.auth.jwt.algorithms.0',
    ],
    [{ auth: { jwt: { jwksUrl: 'ftp://idp/jwks', issuer: 'i', audience: 'a' } } }, 'server.auth.jwt.jwksUrl'],
    [{ auth: { tokens: [{ ...token, sha256: 'abc' }] } }, 'server.auth.tokens.0.sha256'],
    [{ auth: { tokens: [{ ...token, namespaces: ['bad ns'] }] } }, 'server.auth.tokens.0.namespaces.0'],
    [{ auth: { tokens: [{ ...token, operations: ['delete'] }] } }, 'server.auth.tokens.0.operations.0'],
    [{ auth: { tokens: [token, token] } }, 'server.auth.tokens.1.name: duplicate'],
    [{ dev: true, tls: { cert: 'c' } }, 'server.tls.key'],
    [{ dev: true, colour: 'blue' }, 'server: Unrecognized key'],
  ])('rejects %j naming the field', (input, message) => {
    expect(() => parseServerConfig(input)).toThrow(InvalidOptionError);
    expect(() => parseServerConfig(input)).toThrow(message);
  });

  it('merges flags over env over the config file', () => {
    const file = {
      port: 9000,
      host: '0.0.0.0',
      cors: { origins: ['https://a.example'], credentials: true },
      dev: false,
    };
    const env = {
      TEMPORAL_KEYRING_PORT: '9100',
      TEMPORAL_KEYRING_CORS_ORIGINS: 'https://b.example, https://c.example',
      TEMPORAL_KEYRING_PATH_PREFIX: '/codec',
      TEMPORAL_KEYRING_DEV: 'true',
    };
    const input = serverConfigInput({ port: '9200', tlsCert: 'cert.pem', tlsKey: 'key.pem' }, env, file);
    expect(input).toMatchObject({
      port: 9200,
      host: '0.0.0.0',
      pathPrefix: '/codec',
      dev: true,
      cors: { origins: ['https://b.example', 'https://c.example'], credentials: true },
      tls: { cert: 'cert.pem', key: 'key.pem' },
    });
    expect(file.port).toBe(9000); // the loaded file is not modified
    expect(() => serverConfigInput({ port: '80a' }, {}, undefined)).toThrow('--port: must be a whole number');
    expect(() => serverConfigInput({}, { TEMPORAL_KEYRING_DEV: 'maybe' }, undefined)).toThrow(
      'TEMPORAL_KEYRING_DEV',
    );
  });
});
