// A local OpenID provider for Custos's tests and quickstart: panva's oidc-provider
// (a certified implementation) with test accounts and login pages of our own, because
// its built-in dev login sets no `amr`/`acr`.
//
//   PORT=4400 node server.mjs
//
// Accounts (test-only passwords):
//   alice / alice-password, one-time code 123456
//        with the code:    amr ["pwd","otp"], acr urn:custos:mfa
//        without it:       amr ["pwd"],       acr urn:custos:pwd
//        (when the client asks for acr_values urn:custos:mfa, the code is required)
//   bob   / bob-password   has no second factor: amr ["pwd"], acr urn:custos:pwd
// More people for the quickstart (examples/quickstart.sh) and the example policy's roles
// (policies/hipaa_policy.csv), each with the one-time code 123456 (a second factor):
//   nora  / nora-password  a nurse (group staff): reads records, adds notes, never deletes
//   sam   / sam-password   the security lead (group security): reviews emergency access
//   adam  / adam-password  an administrator (group dba): the admin endpoints, nothing clinical
//   rhea, ravi, rosa / <name>-password   reviewers (group audit): the audit views and
//        the review of emergency access
// Clients register themselves (dynamic registration at /reg), or come from
// CUSTOS_IDP_CLIENTS (a JSON array of client metadata).
//
// Access tokens for the API audience urn:custos:api are JWTs (RFC 9068, typ at+jwt),
// carrying amr/acr/auth_time of the sign-in and the account's email and groups.
//
// Test hooks: a client registered with client_name "tamper" receives ID tokens whose
// payload was altered after signing (as an attacker in the middle would), so tests can
// prove the relying party checks signatures. With CUSTOS_IDP_TEST_SIGNER=1, POST
// /test/sign {header, payload} returns a JWT signed with the provider's key (tests make
// tokens the provider would never issue: wrong audience, typ, times), and POST
// /test/disable/NAME (/test/enable/NAME) disables an account: it can no longer sign in
// and its refresh tokens are refused.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT || 4400);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;

const accounts = {
  alice: { password: 'alice-password', otp: '123456', email: 'alice@example.test', name: 'Alice Clinician', groups: ['clinicians'] },
  bob: { password: 'bob-password', email: 'bob@example.test', name: 'Bob Staff', groups: ['staff'] },
  nora: { password: 'nora-password', otp: '123456', email: 'nora@example.test', name: 'Nora Nurse', groups: ['staff'] },
  sam: { password: 'sam-password', otp: '123456', email: 'sam@example.test', name: 'Sam Security', groups: ['security'] },
  adam: { password: 'adam-password', otp: '123456', email: 'adam@example.test', name: 'Adam Admin', groups: ['dba'] },
  rhea: { password: 'rhea-password', otp: '123456', email: 'rhea@example.test', name: 'Rhea Reviewer', groups: ['audit'] },
  ravi: { password: 'ravi-password', otp: '123456', email: 'ravi@example.test', name: 'Ravi Reviewer', groups: ['audit'] },
  rosa: { password: 'rosa-password', otp: '123456', email: 'rosa@example.test', name: 'Rosa Reviewer', groups: ['audit'] },
};
const MFA = 'urn:custos:mfa';
const API = 'urn:custos:api';

// Signing keys made at start: nothing secret is committed.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: JSON.parse(process.env.CUSTOS_IDP_CLIENTS || '[]'),
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== API) throw new errors.InvalidTarget();
        return { scope: 'api', audience: API, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  // Everything here runs on 127.0.0.1: let the provider's outgoing calls (back-channel
  // logout) reach loopback addresses, which its SSRF guard refuses by default.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  // Refresh tokens for every client allowed the refresh_token grant (the gateway
  // re-validates sessions with them), without asking for offline_access.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  extraTokenClaims(ctx, token) {
    const code = ctx.oidc.entities.AuthorizationCode;
    if (!code || token.kind !== 'AccessToken') return undefined;
    const a = accounts[code.accountId] || {};
    return { amr: code.amr, acr: code.acr, auth_time: code.authTime, email: a.email, groups: a.groups };
  },
  acrValues: ['urn:custos:mfa', 'urn:custos:pwd'],
  // Scope claims (email, name, groups) in the ID token itself, as many enterprise IdPs do.
  conformIdTokenClaims: false,
  // acr, amr and auth_time are part of the openid scope, so every ID token carries them.
  claims: { sid: null, openid: ['sub', 'acr', 'amr', 'auth_time'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access', 'api'],
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a || a.disabled) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: a.email, email_verified: true, name: a.name, groups: a.groups };
      },
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60 },
});

provider.on('backchannel.error', (ctx, err, client) => console.error(`back-channel logout to ${client.clientId} failed: ${err.message} ${err.cause ? err.cause.message || err.cause.code : ""}`));
provider.on('server_error', (ctx, err) => console.error(`server error: ${err.stack}`));

provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === 'token' && ctx.oidc.client?.clientName === 'tamper' && ctx.body?.id_token) {
    const [h, p, sig] = ctx.body.id_token.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    claims.sub = 'mallory';
    ctx.body = { ...ctx.body, id_token: [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), sig].join('.') };
  }
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, error, wantOtp) {
  res.writeHead(error ? 401 : 200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><title>Test IdP sign-in</title>
<h1>Test IdP: sign in</h1>${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>User <input name="username" id="username" autofocus></label>
<label>Password <input name="password" id="password" type="password"></label>
<label>One-time code${wantOtp ? ' (required)' : ' (if you have one)'} <input name="otp" id="otp" autocomplete="one-time-code"></label>
<button type="submit" id="submit">Sign in</button></form>`);
}

async function readBody(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body;
}
async function readForm(req) {
  return Object.fromEntries(new URLSearchParams(await readBody(req)));
}
readForm.raw = readBody;

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const wantMfa = String(params.acr_values || '').split(' ').includes(MFA);
    if (req.method === 'GET') return loginPage(res, uid, undefined, wantMfa);
    if (req.method !== 'POST' || action !== 'login') throw new Error('unexpected');
    const { username, password, otp } = await readForm(req);
    const a = accounts[username];
    if (!a || a.disabled || a.password !== password) return loginPage(res, uid, 'Wrong user or password.', wantMfa);
    if (otp && otp !== a.otp) return loginPage(res, uid, 'Wrong one-time code.', wantMfa);
    if (wantMfa && a.otp && !otp) return loginPage(res, uid, 'This service needs your one-time code.', wantMfa);
    const login = otp
      ? { accountId: username, amr: ['pwd', 'otp'], acr: MFA }
      : { accountId: username, amr: ['pwd'], acr: 'urn:custos:pwd' };
    return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent') {
    // Test clients are first-party: consent is granted at once.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  throw new Error(`unsupported prompt ${prompt.name}`);
}

function testSign(header, payload) {
  const h = Buffer.from(JSON.stringify({ alg: 'RS256', kid: jwk.kid, ...header })).toString('base64url');
  const p = Buffer.from(JSON.stringify(payload)).toString('base64url');
  // PS256 when asked (the same RSA key, PSS padding): a token its RS256 key must not verify.
  const key = header.alg === 'PS256'
    ? { key: privateKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
    : privateKey;
  const sig = crypto.sign('RSA-SHA256', Buffer.from(`${h}.${p}`), key).toString('base64url');
  return `${h}.${p}.${sig}`;
}

const callback = provider.callback();
http
  .createServer(async (req, res) => {
    const toggle = req.url.match(/^\/test\/(disable|enable)\/([a-z]+)$/);
    if (process.env.CUSTOS_IDP_TEST_SIGNER === '1' && req.method === 'POST' && toggle && accounts[toggle[2]]) {
      accounts[toggle[2]].disabled = toggle[1] === 'disable';
      res.writeHead(204);
      return res.end();
    }
    if (process.env.CUSTOS_IDP_TEST_SIGNER === '1' && req.method === 'POST' && req.url === '/test/sign') {
      const { header, payload } = JSON.parse((await readForm.raw(req)) || '{}');
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end(testSign(header || {}, payload || {}));
    }
    const m = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?$/);
    if (!m) return callback(req, res);
    try {
      await interaction(req, res, m[1], m[2]);
    } catch (e) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${e.message}\n`);
    }
  })
  .listen(port, process.env.LISTEN_HOST || '127.0.0.1', () => console.log(`test IdP at ${issuer}`));
