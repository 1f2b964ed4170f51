// TEST-ONLY OpenID Connect provider for callvault's tests (oidc-provider, in memory).
//
// Started by tests/fixtures/oidc.py; never part of a deployment. Usage:
//
//   node tests/idp/server.mjs [--port N] [--config FILE]
//
// --port (or IDP_PORT): the port on 127.0.0.1; 0 (the default) lets the kernel pick a
//   free one, so a fixture never races for a port. The issuer is http://127.0.0.1:PORT.
// --config (or IDP_CONFIG): a JSON file (shape: DEFAULTS below; every key optional).
//   Without `jwks`, an RS256 key pair is generated at start.
//
// Once listening it prints one JSON line to stdout, {"ready": true, "issuer": ..., "port": ...},
// and it exits on SIGTERM/SIGINT or when its stdin closes (so it never outlives its parent).
//
// What it offers:
// - authorization code + PKCE (S256, required) for the public client (`clients`); the
//   devInteractions login page accepts a login from `accounts` (any password) and the
//   consent page has one "Continue" button;
// - resource indicators (RFC 8707: absolute URIs, here URNs): access tokens for a
//   resource in `resources` are RS256 JWTs (typ at+jwt, RFC 9068) with aud = the
//   resource and the account's role and tenant under the claim names in `claims`;
//   `defaultResource` is used when a request names none;
// - CORS on the token endpoint for origins of the client's redirect URIs (and, for a
//   native client, any loopback port), so a page can exchange its code itself;
// - TEST ONLY: when `testGrant` is set, the grant type TEST_GRANT at the token endpoint
//   lets that confidential client mint an access token for any account without a
//   browser (parameters: account, optional resource). No real provider has this.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { Provider, errors } from 'oidc-provider';

export const TEST_GRANT = 'urn:callvault:params:grant-type:test-account';

const DEFAULTS = {
  defaultResource: 'urn:callvault:api',
  resources: {
    'urn:callvault:api': { scope: 'callvault' },
    'urn:callvault:other-api': { scope: 'other' },
  },
  claims: { role: 'callvault_role', tenant: 'tenant' },
  accessTokenTtl: 600,
  clients: [
    {
      client_id: 'callvault-qa',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/oidc/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  accounts: {
    alice: { name: 'Alice Reviewer', role: 'cv-qa-reviewers', tenant: 'acme' },
    sam: { name: 'Sam Supervisor', role: 'cv-supervisors', tenant: 'globex' },
    olivia: { name: 'Olivia Officer', role: 'cv-compliance', tenant: 'acme' },
    norole: { name: 'No Role', tenant: 'acme' },
  },
  testGrant: null, // { client_id, client_secret } - TEST ONLY
  jwks: null, // { keys: [private JWK with kid, alg RS256, use sig] }
};

function loadConfig(path) {
  const given = path ? JSON.parse(readFileSync(path, 'utf8')) : {};
  return { ...DEFAULTS, ...given, claims: { ...DEFAULTS.claims, ...given.claims } };
}

function generatedJwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: `gen-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' }] };
}

function loopbackOrigin(origin) {
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' && (url.hostname === '127.0.0.1' || url.hostname === '[::1]');
  } catch {
    return false;
  }
}

function providerConfiguration(config) {
  const { accounts, claims: names, resources } = config;
  const roleAndTenant = (account) => {
    const out = {};
    if (account.role !== undefined) out[names.role] = account.role;
    if (account.tenant !== undefined) out[names.tenant] = account.tenant;
    return out;
  };
  const clients = [...config.clients];
  if (config.testGrant) {
    clients.push({
      client_id: config.testGrant.client_id,
      client_secret: config.testGrant.client_secret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [TEST_GRANT],
      response_types: [],
      redirect_uris: [],
    });
  }
  return {
    clients,
    jwks: config.jwks ?? generatedJwks(),
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    responseTypes: ['code'],
    scopes: ['openid', 'profile', ...Object.values(resources).map((r) => r.scope)],
    claims: { openid: ['sub'], profile: ['name', names.role, names.tenant] },
    async findAccount(_ctx, id) {
      const account = accounts[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, name: account.name, ...roleAndTenant(account) };
        },
      };
    },
    async extraTokenClaims(_ctx, token) {
      // Only JWT access tokens for a resource server carry role and tenant.
      const account = token.accountId ? accounts[token.accountId] : undefined;
      if (!account || !token.resourceServer) return undefined;
      return roleAndTenant(account);
    },
    clientBasedCORS(_ctx, origin, client) {
      if (client.applicationType === 'native' && loopbackOrigin(origin)) return true;
      return client.redirectUris.some((uri) => new URL(uri).origin === origin);
    },
    ttl: {
      AccessToken: config.accessTokenTtl,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      IdToken: config.accessTokenTtl,
    },
    features: {
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => config.defaultResource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          const resource = resources[indicator];
          if (!resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return resourceServerInfo(config, indicator);
        },
      },
    },
  };
}

function resourceServerInfo(config, indicator) {
  return {
    scope: config.resources[indicator].scope,
    audience: indicator,
    accessTokenTTL: config.accessTokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

// TEST ONLY: a token-endpoint grant that mints an access token for a named account.
function registerTestGrant(provider, config) {
  provider.registerGrantType(
    TEST_GRANT,
    async (ctx) => {
      const { client, params } = ctx.oidc;
      if (!Object.hasOwn(config.accounts, params.account ?? '')) {
        throw new errors.InvalidGrant('unknown test account');
      }
      const indicator = params.resource ?? config.defaultResource;
      if (!Object.hasOwn(config.resources, indicator)) {
        throw new errors.InvalidTarget(`unknown resource ${indicator}`);
      }
      const info = resourceServerInfo(config, indicator);
      const token = new provider.AccessToken({
        accountId: params.account,
        client,
        grantId: `test-${randomBytes(8).toString('hex')}`,
        gty: TEST_GRANT,
        scope: info.scope,
      });
      token.resourceServer = { ...info, identifier: () => indicator };
      const value = await token.save();
      ctx.body = {
        access_token: value,
        token_type: 'Bearer',
        expires_in: token.expiration,
        scope: info.scope,
      };
    },
    ['account', 'resource'],
  );
}

async function main() {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, config: { type: 'string' } },
  });
  const config = loadConfig(values.config ?? process.env.IDP_CONFIG);
  const port = Number(values.port ?? process.env.IDP_PORT ?? 0);

  // Listen first (port 0 = any free port), then build the provider for that issuer.
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, providerConfiguration(config));
  if (config.testGrant) registerTestGrant(provider, config);
  provider.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
  handler = provider.callback();

  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ ready: true, issuer, port: server.address().port })}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
