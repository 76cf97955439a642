// An OpenID Provider for the directory tests: `oidc-provider` (OpenID-certified), over TLS
// with the test's CA, on loopback. Everything comes from the JSON file named as the first
// argument (written by the test): the issuer, the port, the TLS and signing keys, the
// clients, and the people, read again at every sign-in so that the test can move someone
// out of a group. The provider's own development login page is used (the login names the
// account). It counts the requests for its keys (GET /__stats) so that the test can check
// how often the appliance fetched them.
import fs from 'node:fs';
import https from 'node:https';
import crypto from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// installed by scripts/test-tools.sh outside the checkout (NODE_PATH names it; ES modules
// do not search NODE_PATH themselves)
const modules = process.env.NODE_PATH;
const { default: Provider } = await import(pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href);

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const people = () => JSON.parse(fs.readFileSync(cfg.people_file, 'utf8'));
const jwks = {
  keys: cfg.signing_keys.map(({ pem, kid }) => ({
    ...crypto.createPrivateKey(fs.readFileSync(pem)).export({ format: 'jwk' }),
    kid, alg: 'ES256', use: 'sig',
  })),
};
const stats = { jwks: 0, discovery: 0, token: 0 };

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  jwks,
  cookies: { keys: ['directory-test-cookie-key'] },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'region'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'groups', 'sanctum.search', 'sanctum.ask'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) => ((cfg.api.services || {})[client.clientId] ? cfg.api.audience : undefined),
      useGrantedResource: () => false,
      getResourceServerInfo: () => ({
        scope: 'sanctum.search sanctum.ask',
        audience: cfg.api.audience,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const service = (cfg.api.services || {})[token.clientId];
    return service ? { groups: service.groups, preferred_username: service.name } : undefined;
  },
  findAccount: async (ctx, id) => {
    const person = people()[id];
    if (!person) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...person }) };
  },
  // first-party clients: consent is given without asking
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile groups');
    grant.addOIDCClaims(['preferred_username', 'name', 'region', 'groups']);
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks') stats.jwks += 1;
  if (ctx.path === '/.well-known/openid-configuration') stats.discovery += 1;
  if (ctx.path === '/token') stats.token += 1;
  await next();
});

const callback = provider.callback();
const server = https.createServer({ cert: fs.readFileSync(cfg.cert), key: fs.readFileSync(cfg.key) }, (req, res) => {
  if (req.url === '/__stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  callback(req, res);
});
server.listen(cfg.port, '127.0.0.1', () => console.log(`listening ${cfg.issuer}`));
