/**
 * The pages emailed links open, until the dashboard replaces them: verify an address, reset a
 * password, confirm a new address, accept an invitation, sign in. A link's token travels in the
 * URL's fragment (`#token=…`), which browsers never send to the server nor in a Referer, so it
 * shows up in no access log; the page's script posts it (same origin) to the dashboard API.
 * A strict Content-Security-Policy: the script is a file of ours, nothing else runs.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';

interface Page {
  title: string;
  /** The form's fields (the token comes from the fragment). */
  fields: { name: string; label: string; type: string; autocomplete?: string }[];
  /** Where the form posts, and what it says when it worked. */
  action: string;
  done: string;
  /** Whether the token from the fragment is posted too. */
  token: boolean;
}

const PAGES: Record<string, Page> = {
  '/verify-email': {
    title: 'Verify your email address',
    fields: [],
    action: '/api/auth/verify-email',
    done: 'Your address is verified. You can sign in now.',
    token: true,
  },
  '/confirm-email': {
    title: 'Confirm your new email address',
    fields: [],
    action: '/api/auth/email/confirm',
    done: 'Your address is changed. Sign in again.',
    token: true,
  },
  '/reset-password': {
    title: 'Choose a new password',
    fields: [
      {
        name: 'password',
        label: 'New password (at least 8 characters)',
        type: 'password',
        autocomplete: 'new-password',
      },
    ],
    action: '/api/auth/password/reset',
    done: 'Your password is changed. Sign in with it.',
    token: true,
  },
  '/forgot-password': {
    title: 'Reset your password',
    fields: [{ name: 'email', label: 'Email', type: 'email', autocomplete: 'email' }],
    action: '/api/auth/password/forgot',
    done: 'If the address has an account, a reset link is on its way.',
    token: false,
  },
  '/accept-invite': {
    title: 'Accept the invitation',
    fields: [],
    action: '/api/invites/accept',
    done: 'You have joined the organization.',
    token: true,
  },
  '/login': {
    title: 'Sign in to Keyport',
    fields: [
      { name: 'email', label: 'Email', type: 'email', autocomplete: 'username' },
      { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' },
    ],
    action: '/api/auth/login',
    done: 'Signed in.',
    token: false,
  },
};

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

function html(page: Page): string {
  const fields = page.fields
    .map(
      (f) =>
        `<label>${escapeHtml(f.label)}<input name="${f.name}" type="${f.type}" required${f.autocomplete ? ` autocomplete="${f.autocomplete}"` : ''}></label>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(page.title)} · Keyport</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}label{display:block;margin:.75rem 0}input{display:block;width:100%;padding:.5rem;font:inherit}button{padding:.5rem 1rem;font:inherit}#status{margin-top:1rem}</style>
</head><body>
<h1>${escapeHtml(page.title)}</h1>
<form id="form" data-action="${page.action}" data-token="${page.token}" data-done="${escapeHtml(page.done)}">
${fields}
<button type="submit">${page.fields.length === 0 ? 'Continue' : 'Submit'}</button>
</form>
<p id="status" role="status"></p>
<script src="/assets/link-page.js"></script>
</body></html>
`;
}

const SCRIPT = `'use strict';
const form = document.getElementById('form');
const status = document.getElementById('status');
const token = new URLSearchParams(location.hash.slice(1)).get('token');
// Out of the address bar (and of the history) as soon as it is read.
if (token) history.replaceState(null, '', location.pathname);
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = Object.fromEntries(new FormData(form));
  if (form.dataset.token === 'true') {
    if (!token) { status.textContent = 'This link has no token: open the link from the email again.'; return; }
    body.token = token;
  }
  const headers = { 'content-type': 'application/json' };
  const session = await fetch('/api/auth/session', { credentials: 'same-origin' }).then((r) => r.json()).catch(() => ({}));
  if (session.csrf_token) headers['x-csrf-token'] = session.csrf_token;
  const response = await fetch(form.dataset.action, { method: 'POST', credentials: 'same-origin', headers, body: JSON.stringify(body) });
  const result = await response.json().catch(() => ({}));
  status.textContent = response.ok ? form.dataset.done : (result.error && result.error.message) || 'Something went wrong.';
});
`;

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

export function linkPages(app: FastifyInstance): void {
  for (const [path, page] of Object.entries(PAGES)) {
    const body = html(page);
    app.get(path, async (_request, reply: FastifyReply) =>
      reply.headers(SECURITY_HEADERS).type('text/html; charset=utf-8').send(body),
    );
  }
  app.get('/assets/link-page.js', async (_request, reply) =>
    reply.headers(SECURITY_HEADERS).type('text/javascript; charset=utf-8').send(SCRIPT),
  );
}
