// The Proctor console: one page in plain JavaScript (no framework, no build step), served by the
// proctor binary with everything it needs. It talks to /api/v1 with the bearer token of the signed-in
// identity (kept in sessionStorage: gone when the tab closes) and routes on the URL's hash:
//
//   #/signin                       sign in with a token, see who you are, sign out
//   #/sessions?identity=...        the sessions, filtered, a page at a time (server cursors)
//   #/sessions/ID                  a session: header, verification, timeline, downloads
//   #/sessions/ID/replay?channel=N its terminal (or a database client's screen) in the player
//   #/chains, #/chains/ID          AI chains: the conversation with the commands it led to
//   #/approvals                    held statements, live, with approve and deny

const API = '/api/v1';
const TOKEN_KEY = 'proctor.token';
const PLAYER_DIR = '/console/vendor/asciinema-player';
const EVENTS_PAGE = 1000;

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  return headers;
}

/// The ApiError of a failed response: the contract's `{"error": {"code", "message"}}`, or what
/// can be said of a response without it.
async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || 'the request failed';
  try {
    const body = await response.json();
    if (body && typeof body.error === 'object' && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && typeof body.error === 'string') {
      message = body.error;
    }
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/// A request to the API. Returns the parsed JSON, or the Response itself with `raw`.
async function api(path, { method = 'GET', body, raw = false, signal } = {}) {
  const init = { method, headers: authHeaders(), signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `the server could not be reached (${e.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return raw ? response : response.json();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/// Downloads what `path` answers as a file (a link cannot send the bearer header).
async function download(path, filename) {
  const response = await api(path, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---------------------------------------------------------------------------------------------
// DOM helpers

/// An element: `h('a', {href: '#/x', class: 'y', onclick: fn}, 'text', child, [more])`.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const MASK = /\[MASKED:[^\]]*\]/g;

/// Text with each `[MASKED:...]` in a highlighted mark, as a fragment.
function masked(text) {
  const frag = document.createDocumentFragment();
  if (text === undefined || text === null) return frag;
  const s = typeof text === 'string' ? text : JSON.stringify(text);
  let last = 0;
  for (const m of s.matchAll(MASK)) {
    if (m.index > last) frag.append(s.slice(last, m.index));
    frag.append(h('mark', { class: 'masked', title: 'masked by Proctor before it was stored' }, m[0]));
    last = m.index + m[0].length;
  }
  if (last < s.length) frag.append(s.slice(last));
  return frag;
}

function errorBox(err) {
  if (err instanceof ApiError) {
    const status = err.status ? `${err.status} ${err.code}` : err.code;
    const box = h('div', { class: 'error', role: 'alert' }, h('strong', null, status), ' ', err.message);
    if (err.status === 401) {
      add(box, [' — ', h('a', { href: '#/signin' }, 'sign in again')]);
    }
    return box;
  }
  return h('div', { class: 'error', role: 'alert' }, h('strong', null, 'error'), ' ', String(err && err.message || err));
}

function showError(container, err) {
  if (err && err.name === 'AbortError') return;
  console.error(err);
  container.append(errorBox(err));
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

// ---------------------------------------------------------------------------------------------
// Values

/// A time of the API: an integer of nanoseconds since the epoch (or an RFC 3339 string).
function toDate(t) {
  if (t === undefined || t === null || t === '') return null;
  let d;
  if (typeof t === 'number') d = new Date(t / 1e6);
  else if (/^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(t)) d = new Date(`${t.replace(' ', 'T')}Z`); // UTC, unmarked
  else d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

function fmtTime(t) {
  const d = toDate(t);
  if (!d) return t === undefined || t === null ? '—' : String(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function fmtClock(t) {
  const d = toDate(t);
  return d ? d.toISOString().slice(11, 23) : '';
}

function timeOf(t) {
  const d = toDate(t);
  return d ? d.getTime() : 0;
}

function fmtDuration(ms) {
  if (!(ms >= 0)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/// A short, readable rendering of any JSON value (answers of a chain, outcomes...).
function describe(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return v.map(describe).join(', ');
  return Object.entries(v)
    .filter(([, x]) => x !== null && x !== undefined && x !== '')
    .map(([k, x]) => `${k}: ${typeof x === 'object' ? JSON.stringify(x) : x}`)
    .join(' · ');
}

function dateInputToRfc3339(value) {
  if (!value) return '';
  return `${value.length === 16 ? `${value}:00` : value}Z`;
}

function rfc3339ToDateInput(value) {
  const d = toDate(value);
  return d ? d.toISOString().slice(0, 19) : '';
}

// ---------------------------------------------------------------------------------------------
// Who is signed in

let me = null;

async function loadMe() {
  if (me || !token()) return me;
  me = await api('/me');
  return me;
}

function hasRole(...roles) {
  return Boolean(me && (me.roles || []).some((r) => roles.includes(r)));
}

function renderWhoami() {
  const box = document.getElementById('whoami');
  box.replaceChildren();
  if (!token()) {
    add(box, h('a', { href: '#/signin' }, 'Sign in'));
    return;
  }
  if (me) {
    add(box, [
      h('span', { class: 'who' }, me.identity),
      ' ',
      (me.roles || []).length
        ? (me.roles || []).map((r) => h('span', { class: 'role' }, r))
        : h('span', { class: 'role none' }, 'no role'),
      ' ',
    ]);
  }
  add(box, h('button', { type: 'button', class: 'link', id: 'signout', onclick: signOut }, 'Sign out'));
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  renderWhoami();
  location.hash = '#/signin';
}

function homeRoute() {
  if (hasRole('admin', 'auditor')) return '#/sessions';
  if (hasRole('approver')) return '#/approvals';
  return '#/signin';
}

// ---------------------------------------------------------------------------------------------
// Routing

const routes = [
  [/^\/signin$/, pageSignIn, 'signin'],
  [/^\/sessions$/, pageSessions, 'sessions'],
  [/^\/sessions\/([^/]+)$/, pageSession, 'sessions'],
  [/^\/sessions\/([^/]+)\/replay$/, pageReplay, 'sessions'],
  [/^\/chains$/, pageChains, 'chains'],
  [/^\/chains\/([^/]+)$/, pageChain, 'chains'],
  [/^\/approvals$/, pageApprovals, 'approvals'],
];

let current = null; // {controller, cleanups}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs = ''] = raw.split('?');
  return { path, params: new URLSearchParams(qs) };
}

async function render() {
  if (current) {
    current.controller.abort();
    for (const f of current.cleanups) {
      try { f(); } catch (e) { console.error(e); }
    }
  }
  const controller = new AbortController();
  current = { controller, cleanups: [] };
  const main = document.getElementById('main');
  const root = h('div', { class: 'page' });
  main.replaceChildren(root);

  const { path, params } = parseHash();
  if (!token() && path !== '/signin') {
    location.replace(`#/signin${query({ next: location.hash.replace(/^#/, '') })}`);
    return;
  }
  try {
    await loadMe();
  } catch (e) {
    if (path !== '/signin') {
      renderWhoami();
      showError(root, e);
      return;
    }
  }
  renderWhoami();
  if (path === '/' || path === '') {
    location.replace(homeRoute());
    return;
  }
  const route = routes.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', route && a.dataset.nav === route[2]);
  }
  if (!route) {
    root.append(h('h1', null, 'Not found'), h('p', null, 'No page here. ', h('a', { href: '#/sessions' }, 'Sessions')));
    return;
  }
  const args = path.match(route[0]).slice(1).map(decodeURIComponent);
  const ctx = {
    root,
    params,
    signal: controller.signal,
    onLeave: (f) => current.cleanups.push(f),
  };
  try {
    await route[1](ctx, ...args);
  } catch (e) {
    showError(root, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Sign in

async function pageSignIn({ root, params }) {
  document.title = 'Sign in · Proctor';
  root.append(h('h1', null, 'Sign in'));
  if (token() && me) {
    const roles = me.roles || [];
    root.append(
      h('section', { class: 'card', id: 'me' },
        h('p', null, 'Signed in as ', h('strong', { class: 'identity' }, me.identity), '.'),
        h('dl', { class: 'facts' },
          h('dt', null, 'Groups'), h('dd', null, (me.groups || []).join(', ') || '—'),
          h('dt', null, 'Roles'), h('dd', null, roles.length ? roles.map((r) => h('span', { class: 'role' }, r)) : 'none')),
        roles.length
          ? h('p', null, h('a', { href: homeRoute() }, 'Continue'))
          : h('p', { class: 'warn' }, 'This identity has no console role (admin, auditor or approver): ask an admin to add it to one.'),
        h('p', null, h('button', { type: 'button', onclick: signOut }, 'Sign out'))));
    return;
  }
  const status = h('div', { class: 'status' });
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, size: 60, placeholder: 'your Proctor token' });
  const form = h('form', { class: 'card signin', id: 'signin' },
    h('p', null, 'Your Proctor token is the one ', h('code', null, 'proctor identity add'), ' printed (the password of your database and SSH logins). It is kept in this tab only.'),
    h('label', { for: 'token' }, 'Token'), input,
    h('button', { type: 'submit' }, 'Sign in'),
    status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    status.replaceChildren();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    me = null;
    try {
      await loadMe();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      me = null;
      showError(status, e);
      renderWhoami();
      return;
    }
    renderWhoami();
    const next = params.get('next');
    if ((me.roles || []).length === 0) {
      render();
    } else {
      location.hash = next && next !== '/signin' ? `#${next}` : homeRoute();
    }
  });
  root.append(form);
  input.focus();
}

// ---------------------------------------------------------------------------------------------
// Sessions list

const SESSION_FILTERS = ['identity', 'connection', 'protocol', 'from', 'to', 'text', 'has_findings', 'has_denials'];

async function pageSessions({ root, params, signal }) {
  document.title = 'Sessions · Proctor';
  root.append(h('h1', null, 'Sessions'));
  const v = (k) => params.get(k) || '';
  const field = (name, label, input) => h('label', { class: 'field' }, h('span', null, label), input);
  const form = h('form', { class: 'filters', id: 'session-filters' },
    field('identity', 'Identity', h('input', { name: 'identity', value: v('identity'), placeholder: 'any' })),
    field('connection', 'Connection', h('input', { name: 'connection', value: v('connection'), placeholder: 'any' })),
    field('protocol', 'Protocol', h('select', { name: 'protocol' },
      ['', 'postgres', 'mysql', 'ssh', 'llm', 'mcp'].map((p) => h('option', { value: p, selected: p === v('protocol') }, p || 'any')))),
    field('from', 'From (UTC)', h('input', { name: 'from', type: 'datetime-local', step: 1, value: rfc3339ToDateInput(v('from')) })),
    field('to', 'To (UTC)', h('input', { name: 'to', type: 'datetime-local', step: 1, value: rfc3339ToDateInput(v('to')) })),
    field('text', 'Statement or command contains', h('input', { name: 'text', value: v('text'), placeholder: 'e.g. DROP TABLE', size: 28 })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'has_findings', checked: v('has_findings') === 'true' }), 'with findings'),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'has_denials', checked: v('has_denials') === 'true' }), 'with denials'),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit' }, 'Search'),
      h('a', { href: '#/sessions', class: 'button secondary' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const next = {};
    for (const k of ['identity', 'connection', 'protocol', 'text']) next[k] = (f.get(k) || '').trim();
    next.from = dateInputToRfc3339(f.get('from'));
    next.to = dateInputToRfc3339(f.get('to'));
    if (f.get('has_findings')) next.has_findings = 'true';
    if (f.get('has_denials')) next.has_denials = 'true';
    location.hash = `#/sessions${query(next)}`;
  });
  root.append(form);

  const filters = {};
  for (const k of SESSION_FILTERS) if (params.get(k)) filters[k] = params.get(k);
  const list = await api(`/sessions${query({ ...filters, cursor: params.get('cursor'), limit: params.get('limit') })}`, { signal });
  const sessions = list.sessions || [];
  if (params.get('cursor')) {
    root.append(h('p', { class: 'muted' }, 'A later page. ', h('a', { href: `#/sessions${query(filters)}` }, 'First page')));
  }
  if (!sessions.length) {
    root.append(h('p', { class: 'empty' }, 'No session matches these filters.'));
  } else {
    root.append(sessionsTable(sessions));
  }
  const pager = h('div', { class: 'pager' });
  if (list.next_cursor) {
    pager.append(h('a', { class: 'button', id: 'next-page', href: `#/sessions${query({ ...filters, cursor: list.next_cursor, limit: params.get('limit') })}` }, 'Next page →'));
  }
  root.append(pager);
}

function sessionsTable(sessions) {
  const rows = sessions.map((s) => {
    const href = `#/sessions/${encodeURIComponent(s.id)}`;
    const ended = s.ended_at ? fmtDuration((s.ended_at - s.started_at) / 1e6) : 'open';
    return h('tr', { class: 'session-row', dataset: { id: s.id } },
      h('td', null, h('a', { href, class: 'session-link' }, fmtTime(s.started_at))),
      h('td', null, s.identity, s.authenticated === false ? h('span', { class: 'tag bad', title: 'did not authenticate' }, 'unauthenticated') : null),
      h('td', null, s.connection || '—'),
      h('td', null, h('span', { class: `proto proto-${s.protocol}` }, s.protocol)),
      h('td', { class: 'muted' }, s.client_addr || ''),
      h('td', null, ended, s.end_reason ? h('div', { class: 'muted small' }, s.end_reason) : null),
      h('td', { class: 'num' }, s.events),
      h('td', { class: 'num' }, s.queries),
      h('td', { class: 'num' }, s.errors ? h('span', { class: 'count bad' }, s.errors) : 0),
      h('td', { class: 'num' }, s.findings ? h('span', { class: 'count warn' }, s.findings) : 0),
      h('td', { class: 'num' }, s.denials ? h('span', { class: 'count bad' }, s.denials) : 0),
      h('td', null, h('a', { href }, s.id)));
  });
  return h('table', { class: 'list', id: 'sessions' },
    h('thead', null, h('tr', null,
      ['Started', 'Identity', 'Connection', 'Protocol', 'Client', 'Duration', 'Events', 'Statements', 'Errors', 'Findings', 'Denials', 'Session']
        .map((t) => h('th', null, t)))),
    h('tbody', null, rows));
}

// ---------------------------------------------------------------------------------------------
// A session

async function pageSession({ root, signal }, id) {
  document.title = `Session ${id} · Proctor`;
  const path = `/sessions/${encodeURIComponent(id)}`;
  const { session: s, terminal_channels: channels = [] } = await api(path, { signal });
  const head = h('div', { class: 'session-head' },
    h('h1', null, 'Session ', h('code', null, s.id), ' ', h('span', { class: `proto proto-${s.protocol}` }, s.protocol)));
  const verification = h('div', { class: 'verification', id: 'verification' }, h('span', { class: 'badge pending' }, 'verifying…'));
  const ended = s.ended_at
    ? `${fmtTime(s.ended_at)} (after ${fmtDuration((s.ended_at - s.started_at) / 1e6)})`
    : 'still open';
  const facts = h('dl', { class: 'facts' },
    h('dt', null, 'Who'), h('dd', null, h('strong', null, s.identity), s.authenticated ? '' : h('span', { class: 'tag bad' }, 'did not authenticate')),
    h('dt', null, 'Where'), h('dd', null, s.connection || '—', h('span', { class: 'muted' }, ` from ${s.client_addr || '?'}`)),
    h('dt', null, 'Started'), h('dd', null, fmtTime(s.started_at)),
    h('dt', null, 'Ended'), h('dd', null, ended),
    h('dt', null, 'How it ended'), h('dd', null, s.end_reason || '—'),
    h('dt', null, 'Counts'), h('dd', { class: 'counts' },
      plural(s.events, 'event'), ' · ', plural(s.queries, 'statement'), ' · ',
      h('span', { class: s.errors ? 'bad' : '' }, plural(s.errors, 'error')), ' · ',
      h('span', { class: s.findings ? 'warn' : '' }, plural(s.findings, 'finding')), ' · ',
      h('span', { class: s.denials ? 'bad' : '' }, plural(s.denials, 'denial'))));
  const dlError = h('div');
  const downloadButton = (label, sub, filename) => h('button', {
    type: 'button',
    onclick: async () => {
      dlError.replaceChildren();
      try { await download(`${path}/${sub}`, filename); } catch (e) { showError(dlError, e); }
    },
  }, label);
  // A terminal (SSH) or a database client's screen replays; a conversation with a model does not.
  const replays = !['llm', 'mcp'].includes(s.protocol);
  const actions = h('div', { class: 'actions' },
    replays ? h('a', { class: 'button', id: 'replay-link', href: `#/sessions/${encodeURIComponent(s.id)}/replay` }, '▶ Replay') : null,
    downloadButton('Download bundle', 'bundle', `proctor-session-${s.id}.json`),
    replays ? downloadButton('Download asciicast', 'asciicast', `proctor-session-${s.id}.cast`) : null,
    dlError);
  if (s.protocol === 'llm') {
    actions.prepend(h('a', { class: 'button', href: `#/chains/${encodeURIComponent(s.id)}` }, 'AI chain view'));
  }
  root.append(head, h('div', { class: 'session-top' }, facts, h('div', null, verification, actions)));
  if (s.protocol === 'ssh' && channels.length > 1) {
    actions.append(h('p', { class: 'muted small' }, `Terminal channels: ${channels.join(', ')}`));
  }

  loadVerification(path, verification, signal);

  root.append(h('h2', null, 'Timeline'));
  const timeline = new Timeline(s);
  root.append(timeline.toolbar, timeline.el);
  await timeline.load(path, signal);
}

async function loadVerification(path, box, signal) {
  try {
    const v = await api(`${path}/verification`, { signal });
    box.replaceChildren(verificationBadge(v));
  } catch (e) {
    if (e.name === 'AbortError') return;
    box.replaceChildren(h('span', { class: 'badge bad' }, 'verification failed'), errorBox(e));
  }
}

function verificationBadge(v) {
  const chain = v.chain || {};
  let label;
  if (v.verified) label = '✓ verified';
  else if (chain.broken_at !== null && chain.broken_at !== undefined) label = `✗ broken at ${chain.broken_at}`;
  else label = '✗ not verified';
  const checks = (v.checks || []).map((c) => {
    // A check names itself, or its line starts with its name ("seals: ...").
    const named = !c.name && /^([\w .'-]{1,40}?): ([\s\S]*)$/.exec(c.detail || '');
    const name = c.name || (named ? named[1] : '');
    const detail = named ? named[2] : c.detail;
    return h('li', { class: c.ok ? 'ok' : 'bad' },
      h('span', { class: 'mark' }, c.ok ? '✓' : '✗'), ' ', name ? h('strong', null, name) : null,
      detail ? `${name ? ' — ' : ''}${detail}` : '');
  });
  return h('details', { class: `verify ${v.verified ? 'ok' : 'bad'}` },
    h('summary', null, h('span', { class: `badge ${v.verified ? 'ok' : 'bad'}`, id: 'verification-badge' }, label)),
    h('div', { class: 'verify-details' },
      h('dl', { class: 'facts' },
        h('dt', null, 'Chain'), h('dd', null, chain.intact ? 'intact' : 'BROKEN', chain.reason ? ` — ${chain.reason}` : ''),
        h('dt', null, 'Events'), h('dd', null, chain.events ?? '—'),
        h('dt', null, 'Head'), h('dd', null, h('code', { class: 'hash' }, chain.head || '—')),
        chain.broken_at !== null && chain.broken_at !== undefined ? [h('dt', null, 'Broken at'), h('dd', null, `event ${chain.broken_at}`)] : null,
        v.checkpoint !== undefined
          ? [h('dt', null, 'Checkpoint'), h('dd', null, v.checkpoint ? `in the log (tree size ${v.checkpoint.tree_size})` : 'none')]
          : null),
      checks.length ? h('ul', { class: 'checks' }, checks) : null));
}

// The timeline of a session's events, loaded a page at a time and appended in fragments, so that
// ten thousand events stay usable. Terminal bytes (term.in/term.out) are hidden unless asked for.

const TERM_KINDS = new Set(['term.out', 'term.in']);

class Timeline {
  constructor(session) {
    this.session = session;
    this.events = new Map();
    this.termCount = 0;
    this.count = 0;
    this.el = h('div', { class: 'timeline', id: 'timeline' });
    this.progress = h('span', { class: 'muted', id: 'timeline-progress' });
    this.termLabel = h('span');
    this.termToggle = h('input', { type: 'checkbox', id: 'show-term' });
    this.termToggle.addEventListener('change', () => this.el.classList.toggle('show-term', this.termToggle.checked));
    this.toolbar = h('div', { class: 'toolbar' },
      this.progress,
      h('label', { class: 'check' }, this.termToggle, this.termLabel));
    if (session.protocol !== 'ssh') this.termLabel.parentElement.hidden = true;
    this.el.addEventListener('click', (ev) => this.onClick(ev));
    this.updateLabels();
  }

  updateLabels(done = false) {
    const total = this.session.events;
    this.progress.textContent = done
      ? `${plural(this.count, 'event')}`
      : `loading events… ${this.count}${total ? ` of ${total}` : ''}`;
    this.termLabel.textContent = ` show terminal bytes (${this.termCount} events)`;
  }

  async load(path, signal) {
    const fetchPage = (after) => {
      const p = api(`${path}/events${query({ after, limit: EVENTS_PAGE })}`, { signal });
      p.catch(() => {}); // awaited below; this only keeps a page left early from reporting it
      return p;
    };
    // The next page is on its way while this one is built.
    let next = fetchPage(null);
    for (;;) {
      const page = await next;
      const events = page.events || [];
      const more = page.next_after !== null && page.next_after !== undefined && events.length > 0;
      if (more) next = fetchPage(page.next_after);
      const frag = document.createDocumentFragment();
      for (const e of events) {
        this.events.set(String(e.seq), e);
        if (TERM_KINDS.has(e.kind)) this.termCount += 1;
        frag.append(eventRow(e));
      }
      this.count += events.length;
      this.el.append(frag);
      this.updateLabels();
      if (!more) break;
      await nextFrame();
    }
    this.updateLabels(true);
    if (!this.count) this.el.append(h('p', { class: 'empty' }, 'No events.'));
  }

  onClick(ev) {
    const button = ev.target.closest('button.raw');
    if (!button) return;
    const row = button.closest('.ev');
    const shown = row.querySelector('pre.json');
    if (shown) {
      shown.remove();
      return;
    }
    const e = this.events.get(row.dataset.seq);
    row.querySelector('.ev-body').append(h('pre', { class: 'json' }, masked(JSON.stringify(e, null, 2))));
  }
}

function eventRow(e) {
  const b = e.body || {};
  const body = h('div', { class: 'ev-body' });
  let cls = '';
  const kind = e.kind;
  switch (kind) {
    case 'db.query':
      add(body, [
        h('div', { class: 'ev-title' }, 'statement',
          b.protocol && b.protocol !== 'simple' ? h('span', { class: 'tag' }, b.protocol) : null,
          b.chain ? h('a', { class: 'tag', href: `#/chains/${encodeURIComponent(b.chain)}` }, 'AI chain') : null),
        h('pre', { class: 'sql' }, masked(b.sql ?? b.statement ?? '')),
        b.params ? h('div', { class: 'small muted' }, 'parameters: ', masked(JSON.stringify(b.params))) : null,
      ]);
      cls = 'stmt';
      break;
    case 'db.result':
      add(body, [
        h('div', { class: 'ev-title' }, '→ ', h('strong', null, b.tag || 'result'),
          b.rows !== undefined ? h('span', { class: 'rows' }, ` ${plural(b.rows, 'row')}`) : null,
          b.duration_us !== undefined ? h('span', { class: 'muted' }, ` in ${fmtDuration(b.duration_us / 1000)}`) : null,
          b.query !== undefined ? h('span', { class: 'muted' }, ` (statement #${b.query})`) : null,
          b.client_masked ? h('span', { class: 'tag masked-tag' }, `${b.client_masked.cells} cells masked for the client`) : null),
        sampleTable(b),
        b.notices ? h('div', { class: 'small' }, 'notices: ', masked(JSON.stringify(b.notices))) : null,
      ]);
      cls = 'result';
      break;
    case 'db.error':
      add(body, [
        h('div', { class: 'ev-title' }, '✗ error', b.sqlstate ? h('span', { class: 'tag' }, b.sqlstate) : null,
          b.code ? h('span', { class: 'tag' }, b.code) : null,
          b.query !== undefined ? h('span', { class: 'muted' }, ` (statement #${b.query})`) : null),
        h('div', { class: 'errmsg' }, masked(b.message ?? '')),
      ]);
      cls = 'err';
      break;
    case 'policy.decision': {
      const action = b.action || '?';
      add(body, [
        h('div', { class: 'ev-title' }, 'guardrail ', h('span', { class: `decision decision-${action}` }, actionLabel(action)),
          ' by rule ', h('code', null, b.rule || '?'),
          b.kind ? h('span', { class: 'tag' }, b.kind) : null,
          (b.flags || []).map((f) => h('span', { class: 'tag' }, f)),
          b.approval ? h('span', { class: 'muted' }, ` request ${b.approval}`) : null),
        b.message ? h('div', null, masked(b.message)) : null,
        (b.sql ?? b.command) ? h('pre', { class: 'sql' }, masked(b.sql ?? b.command)) : null,
      ]);
      cls = `decision-row decision-row-${action}`;
      break;
    }
    case 'approval':
      add(body, [
        h('div', { class: 'ev-title' }, 'approval ', h('span', { class: `decision decision-${b.outcome}` }, b.outcome || '?'),
          b.by ? [' by ', h('strong', null, b.by)] : null,
          b.approval ? h('span', { class: 'muted' }, ` request ${b.approval}`) : null,
          b.waited_ms !== undefined ? h('span', { class: 'muted' }, ` after ${fmtDuration(b.waited_ms)}`) : null),
        b.reason ? h('div', null, 'reason: ', masked(b.reason)) : null,
      ]);
      cls = 'approval-row';
      break;
    case 'ssh.exec':
    case 'ssh.command':
    case 'ssh.shell':
      add(body, [
        h('div', { class: 'ev-title' }, kind === 'ssh.shell' ? 'shell' : kind === 'ssh.exec' ? 'exec' : 'command',
          b.channel !== undefined ? h('span', { class: 'muted' }, ` channel ${b.channel}`) : null,
          b.term ? h('span', { class: 'muted' }, ` ${b.term} ${b.cols ?? ''}×${b.rows ?? ''}`) : null),
        (b.command ?? b.line) ? h('pre', { class: 'sql' }, masked(b.command ?? b.line)) : null,
      ]);
      cls = 'stmt';
      break;
    case 'term.out':
    case 'term.in':
      add(body, h('pre', { class: 'term' }, h('span', { class: `io io-${kind === 'term.in' ? 'in' : 'out'}` }, kind === 'term.in' ? 'typed' : 'shown'),
        b.hidden ? h('em', null, `${b.bytes ?? '?'} bytes typed without echo (not stored)`) : masked(printable(b.data))));
      cls = 'term-row';
      break;
    case 'llm.request':
      add(body, [
        h('div', { class: 'ev-title' }, 'turn to ', h('strong', null, describe(b.model) || '?'),
          b.provider ? h('span', { class: 'muted' }, ` via ${b.provider}`) : null,
          b.context !== undefined ? h('span', { class: 'muted' }, ` (${plural(b.context, 'message')} already in the chain)`) : null,
          b.chain ? h('a', { class: 'tag', href: `#/chains/${encodeURIComponent(b.chain)}` }, 'AI chain') : null),
        (b.new_messages || []).map((m) => {
          const message = (m && m.message) || m || {};
          return h('div', { class: `msg msg-${message.role}` }, h('span', { class: 'who' }, roleName(message.role)),
            h('div', { class: 'text' }, masked(messageText(message))));
        }),
      ]);
      cls = 'stmt';
      break;
    case 'llm.response':
      add(body, [
        h('div', { class: 'ev-title' }, 'answer', b.status ? h('span', { class: 'tag' }, String(b.status)) : null,
          b.duration_ms !== undefined ? h('span', { class: 'muted' }, ` in ${fmtDuration(b.duration_ms)}`) : null),
        b.text ? h('div', { class: 'msg msg-assistant' }, h('span', { class: 'who' }, 'AI'), h('div', { class: 'text' }, masked(b.text))) : null,
        (b.tool_calls || []).map((c) => h('div', { class: 'msg' }, h('span', { class: 'who' }, 'AI proposed'),
          h('div', { class: 'text' }, h('strong', null, c.name || '?'), ' ', h('code', null, masked(describe(c.arguments)))))),
        b.error ? h('div', { class: 'errmsg' }, masked(describe(b.error))) : null,
      ]);
      cls = b.error ? 'err' : 'result';
      break;
    case 'mcp.call':
      add(body, [
        h('div', { class: 'ev-title' }, 'tool call ', h('strong', null, b.tool || '?'),
          b.connection ? h('span', { class: 'muted' }, ` on ${b.connection}`) : null,
          b.proposed_by && b.proposed_by.seq !== undefined ? h('span', { class: 'muted' }, ` (proposed by the AI in #${b.proposed_by.seq})`) : null,
          b.chain ? h('a', { class: 'tag', href: `#/chains/${encodeURIComponent(b.chain)}` }, 'AI chain') : null),
        b.arguments ? h('pre', { class: 'sql' }, masked(typeof b.arguments === 'string' ? b.arguments : JSON.stringify(b.arguments, null, 1))) : null,
      ]);
      cls = 'stmt';
      break;
    default:
      add(body, [h('div', { class: 'ev-title' }, kind), summary(b)]);
      if (kind === 'session.end') cls = 'end';
      if (kind === 'session.start') cls = 'start';
      if (kind.startsWith('auth.')) cls = kind === 'auth.failure' ? 'err' : 'start';
  }
  if ((e.findings || []).length) {
    body.append(h('ul', { class: 'findings' }, e.findings.map((f) => h('li', null,
      h('span', { class: 'tag warn' }, 'finding'), ' ', h('strong', null, f.detector || '?'),
      f.fingerprint ? [' ', h('code', { class: 'fp', title: 'fingerprint' }, f.fingerprint)] : null,
      f.location ? h('span', { class: 'muted' }, ` in ${typeof f.location === 'string' ? f.location : JSON.stringify(f.location)}`) : null))));
  }
  body.append(h('button', { type: 'button', class: 'raw', title: 'the stored event' }, '{ }'));
  return h('div', { class: `ev ev-${kind.replace(/\./g, '-')} ${cls} ${TERM_KINDS.has(kind) ? 'ev-term' : ''}`, dataset: { seq: e.seq } },
    h('span', { class: 'ev-time', title: fmtTime(e.at) }, fmtClock(e.at)),
    h('span', { class: 'ev-seq' }, `#${e.seq}`),
    body);
}

/// What a stored LLM message says, in one line: its text, or what its blocks are.
function messageText(message) {
  const content = message.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((b) => {
      if (typeof b === 'string') return b;
      switch (b && b.type) {
        case 'text': return b.text || '';
        case 'tool_result': return `[tool result ${describe(b.content)}]`;
        case 'tool_use': return `[tool call ${b.name} ${JSON.stringify(b.input)}]`;
        case 'thinking': return '[thinking]';
        default: return `[${(b && b.type) || '?'}]`;
      }
    }).join(' ');
  }
  return (message.tool_calls || []).map((c) => `[tool call ${c.function?.name} ${c.function?.arguments}]`).join(' ');
}

function actionLabel(action) {
  return { deny: 'DENIED', require_approval: 'HELD for approval', hold: 'HELD for approval', allow: 'allowed' }[action] || action;
}

function printable(data) {
  if (typeof data !== 'string') return data === undefined ? '' : JSON.stringify(data);
  return data
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]|\x1b[=>78DEHMNOZc]/g, '')
    .replace(/\r\n?/g, '\n')
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => `^${String.fromCharCode(c.charCodeAt(0) ^ 0x40)}`);
}

/// The small fields of an event body as `key: value` pairs; larger ones in a closed details.
function summary(body) {
  const small = [];
  const large = [];
  for (const [k, v] of Object.entries(body)) {
    if (v === null || v === undefined) continue;
    const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
    if (text.length <= 80) small.push(h('span', { class: 'kv' }, h('span', { class: 'k' }, k), ' ', masked(text)));
    else large.push([k, v]);
  }
  return [
    small.length ? h('div', { class: 'kvs' }, small) : null,
    large.length ? h('details', { class: 'more' }, h('summary', null, large.map(([k]) => k).join(', ')),
      h('pre', { class: 'json' }, masked(JSON.stringify(Object.fromEntries(large), null, 2)))) : null,
  ];
}

/// A result's sample as a small table (rows of cells), or its lines (data messages).
function sampleTable(b) {
  const sample = b.sample;
  if (!Array.isArray(sample) || !sample.length) return null;
  const note = b.sample_truncated ? h('div', { class: 'muted small' }, `sample of the first ${sample.length} rows`) : null;
  if (!sample.every(Array.isArray)) {
    return h('div', null, h('pre', { class: 'sample-lines' }, sample.map((l) => [masked(typeof l === 'string' ? l : JSON.stringify(l)), '\n'])), note);
  }
  const columns = b.columns || [];
  const width = Math.max(columns.length, ...sample.map((r) => r.length));
  const cell = (c) => (c === null ? h('td', { class: 'null' }, 'NULL') : h('td', null, masked(typeof c === 'string' ? c : JSON.stringify(c))));
  return h('div', { class: 'sample' },
    h('table', { class: 'sample-table' },
      columns.length ? h('thead', null, h('tr', null, columns.map((c) => h('th', null, masked(c))))) : null,
      h('tbody', null, sample.map((row) => h('tr', null, Array.from({ length: width }, (_, i) => (i < row.length ? cell(row[i]) : h('td')))))),
    note));
}

// ---------------------------------------------------------------------------------------------
// Replay

let playerLoading = null;

function loadPlayer() {
  if (window.AsciinemaPlayer) return Promise.resolve(window.AsciinemaPlayer);
  playerLoading ??= new Promise((resolve, reject) => {
    document.head.append(h('link', { rel: 'stylesheet', href: `${PLAYER_DIR}/asciinema-player.css` }));
    const script = h('script', { src: `${PLAYER_DIR}/asciinema-player.min.js` });
    script.addEventListener('load', () => resolve(window.AsciinemaPlayer));
    script.addEventListener('error', () => {
      playerLoading = null;
      reject(new Error('the terminal player could not be loaded'));
    });
    document.head.append(script);
  });
  return playerLoading;
}

const SPEEDS = [0.5, 1, 2, 4, 8];

async function pageReplay({ root, params, signal, onLeave }, id) {
  document.title = `Replay ${id} · Proctor`;
  const path = `/sessions/${encodeURIComponent(id)}`;
  const sessionHref = `#/sessions/${encodeURIComponent(id)}`;
  root.append(h('p', { class: 'crumbs' }, h('a', { href: sessionHref }, `← Session ${id}`)));
  const [{ session: s, terminal_channels: channels = [] }, Player] = await Promise.all([
    api(path, { signal }),
    loadPlayer(),
  ]);
  root.append(h('h1', null, 'Replay of ', h('code', null, s.id), ' ',
    h('span', { class: `proto proto-${s.protocol}` }, s.protocol)));
  root.append(h('p', { class: 'muted' },
    `${s.identity} on ${s.connection || '?'}, ${fmtTime(s.started_at)}. `,
    s.protocol === 'ssh' ? 'The terminal as the user saw it.' : "The client's screen, rendered from the statements and result samples, with their recorded timing."));

  const channel = params.get('channel') || (s.protocol === 'ssh' && channels.length ? String(channels[0]) : '');
  const controls = h('div', { class: 'toolbar replay-controls' });
  if (s.protocol === 'ssh' && channels.length > 1) {
    const picker = h('select', { id: 'channel' }, channels.map((c) => h('option', { value: String(c), selected: String(c) === channel }, `channel ${c}`)));
    picker.addEventListener('change', () => {
      location.hash = `${sessionHref}/replay${query({ channel: picker.value })}`;
    });
    controls.append(h('label', { class: 'field inline' }, h('span', null, 'Terminal'), picker));
  }
  const box = h('div', { class: 'player', id: 'player' });
  const status = h('div');
  root.append(controls, box, status);

  const response = await api(`${path}/asciicast${query({ channel })}`, { raw: true, signal });
  const cast = await response.text();

  let player = null;
  let speed = Number(params.get('speed')) || 1;
  let idleLimit = null;
  const create = (startAt, autoPlay) => {
    if (player) player.dispose();
    box.replaceChildren();
    const opts = { speed, autoPlay, controls: true, fit: 'width', terminalFontSize: '14px', preload: true };
    if (startAt) opts.startAt = startAt;
    if (idleLimit) opts.idleTimeLimit = idleLimit;
    player = Player.create({ data: cast }, box, opts);
    player.addEventListener('playing', () => { state.playing = true; });
    player.addEventListener('pause', () => { state.playing = false; });
    player.addEventListener('ended', () => { state.playing = false; });
  };
  const state = { playing: false };
  const restart = () => {
    const at = player ? player.getCurrentTime() : 0;
    create(at, state.playing);
  };
  const speedButtons = SPEEDS.map((x) => {
    const b = h('button', { type: 'button', class: 'speed', 'aria-pressed': String(x === speed), dataset: { speed: x } }, `${x}×`);
    b.addEventListener('click', () => {
      speed = x;
      for (const o of speedButtons) o.setAttribute('aria-pressed', String(o === b));
      restart();
    });
    return b;
  });
  const idle = h('input', { type: 'checkbox', id: 'idle-limit' });
  idle.addEventListener('change', () => {
    idleLimit = idle.checked ? 2 : null;
    restart();
  });
  controls.append(
    h('button', { type: 'button', id: 'play', onclick: () => player && player.play() }, '▶ Play'),
    h('button', { type: 'button', id: 'pause', onclick: () => player && player.pause() }, '❚❚ Pause'),
    h('span', { class: 'speeds' }, 'Speed ', speedButtons),
    h('label', { class: 'check' }, idle, ' skip pauses over 2 s'),
    h('button', {
      type: 'button',
      class: 'secondary',
      onclick: async () => {
        try { await download(`${path}/asciicast${query({ channel })}`, `proctor-session-${s.id}${channel ? `-${channel}` : ''}.cast`); } catch (e) { showError(status, e); }
      },
    }, 'Download asciicast'));
  create(0, false);
  onLeave(() => player && player.dispose());
}

// ---------------------------------------------------------------------------------------------
// AI chains

async function pageChains({ root, params, signal }) {
  document.title = 'AI chains · Proctor';
  root.append(h('h1', null, 'AI chains'));
  const identity = h('input', { name: 'identity', value: params.get('identity') || '', placeholder: 'any' });
  const form = h('form', { class: 'filters' },
    h('label', { class: 'field' }, h('span', null, 'Identity'), identity),
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Search')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/chains${query({ identity: identity.value.trim() })}`;
  });
  root.append(form);
  const list = await api(`/chains${query({ identity: params.get('identity'), cursor: params.get('cursor') })}`, { signal });
  const chains = list.chains || [];
  if (!chains.length) {
    root.append(h('p', { class: 'empty' }, 'No AI chain here.'));
  } else {
    root.append(h('table', { class: 'list', id: 'chains' },
      h('thead', null, h('tr', null, ['Started', 'Identity', 'Provider', 'Turns', 'Proposals', 'Secrets', 'Ended', 'Chain'].map((t) => h('th', null, t)))),
      h('tbody', null, chains.map((c) => {
        const href = `#/chains/${encodeURIComponent(c.chain)}`;
        return h('tr', null,
          h('td', null, h('a', { href }, fmtTime(c.started_at ?? c.started))),
          h('td', null, c.identity),
          h('td', null, c.provider),
          h('td', { class: 'num' }, c.turns),
          h('td', { class: 'num' }, c.proposals),
          h('td', { class: 'num' }, c.secrets ? h('span', { class: 'count warn' }, c.secrets) : 0),
          h('td', null, c.ended || 'open'),
          h('td', null, h('a', { href }, c.chain)));
      }))));
  }
  if (list.next_cursor) {
    root.append(h('div', { class: 'pager' }, h('a', { class: 'button', href: `#/chains${query({ identity: params.get('identity'), cursor: list.next_cursor })}` }, 'Next page →')));
  }
}

async function pageChain({ root, signal }, id) {
  document.title = `Chain ${id} · Proctor`;
  const c = await api(`/chains/${encodeURIComponent(id)}`, { signal });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/chains' }, '← AI chains')),
    h('h1', null, 'AI chain ', h('code', null, c.chain)),
    h('dl', { class: 'facts' },
      h('dt', null, 'Started by'), h('dd', null, h('strong', null, c.identity), c.client ? h('span', { class: 'muted' }, ` from ${c.client}`) : null),
      h('dt', null, 'Provider'), h('dd', null, c.provider || '—'),
      h('dt', null, 'Started'), h('dd', null, fmtTime(c.started_at ?? c.started)),
      h('dt', null, 'Ended'), h('dd', null, c.ended || 'open')));

  root.append(answersBox(c));

  // The conversation and the commands, by time.
  const items = [];
  let order = 0;
  for (const t of c.turns || []) items.push({ at: timeOf(t.at), order: order++, el: turnItem(t) });
  for (const p of c.proposals || []) items.push({ at: timeOf(p.at), order: order++, el: proposalItem(p) });
  for (const cmd of c.commands || []) items.push({ at: timeOf(cmd.at), order: order++, el: commandItem(cmd) });
  for (const s of c.secrets || []) items.push({ at: timeOf(s.at), order: order++, el: secretItem(s) });
  items.sort((x, y) => x.at - y.at || x.order - y.order);
  root.append(h('h2', null, 'Conversation and commands'),
    items.length ? h('div', { class: 'chain', id: 'chain-timeline' }, items.map((i) => i.el)) : h('p', { class: 'empty' }, 'Nothing recorded yet.'));
}

/// The box that answers an auditor's four questions about a chain, from its `answers`: each answer
/// a sentence (a string) or the data it is made of (objects), whichever the server sends.
function answersBox(c) {
  const a = c.answers || {};
  const items = (xs) => (Array.isArray(xs) ? xs : xs ? [xs] : []);
  const list = (xs, render, empty) => (items(xs).length
    ? h('ul', null, items(xs).map((x) => h('li', null, typeof x === 'string' ? masked(x) : render(x))))
    : h('p', { class: 'muted' }, empty));
  const started = a.started_by;
  const who = typeof started === 'object' && started
    ? [h('strong', null, started.identity || c.identity), started.client ? ` from ${started.client}` : '', started.at ? `, ${fmtTime(started.at)}` : '']
    : started ? masked(started) : h('strong', null, c.identity);
  const args = (x) => (typeof x === 'string' ? x : JSON.stringify(x));
  const proposal = (p) => [
    h('strong', null, p.tool || '?'), ' ', h('code', null, masked(args(p.arguments))),
    p.seq !== undefined ? h('span', { class: 'muted' }, ` (#${p.seq})`) : null,
    items(p.replies).length
      ? h('ul', { class: 'replies' }, items(p.replies).map((r) => h('li', null,
        h('span', { class: 'who' }, roleName(r.role)), ': ', masked(r.text ?? describe(r)))))
      : h('div', { class: 'muted small' }, 'no reply after it'),
  ];
  const statement = (x) => [
    h('code', null, masked(x.sql || args(x.arguments) || '')), ' → ', statementVerdict(x),
    h('span', { class: 'muted small' }, ` ${[x.tool, x.connection && `on ${x.connection}`, x.identity && `by ${x.identity}`].filter(Boolean).join(' ')}`),
  ];
  const secret = (x) => [
    h('strong', null, x.detector || '?'), x.fingerprint ? [' ', h('code', { class: 'fp' }, x.fingerprint)] : null,
    x.event ? h('span', { class: 'muted' }, ` in ${x.event}${x.seq !== undefined ? ` #${x.seq}` : ''}`) : null,
    ': ', secretVerdict(x),
  ];
  const reached = a.secrets_reaching_provider;
  return h('section', { class: 'card answers', id: 'answers' },
    h('h2', null, 'In short'),
    h('dl', { class: 'qa' },
      h('dt', null, 'Who started it?'), h('dd', null, who),
      h('dt', null, 'What did the AI propose, and how did the human reply?'),
      h('dd', null, list(a.proposed, proposal, 'The AI proposed nothing.'),
        a.human_replies !== undefined ? [h('div', { class: 'sub' }, 'Human replies'), list(a.human_replies, (r) => masked(r.text ?? describe(r)), 'none')] : null),
      h('dt', null, 'What ran?'),
      h('dd', null, list(a.ran, statement, 'Nothing reached a target.'),
        items(a.stopped).length ? [h('div', { class: 'sub' }, 'Stopped by a guardrail'), list(a.stopped, statement, '')] : null),
      h('dt', null, 'Which secrets passed, and were they masked?'),
      h('dd', null, list(a.secrets, secret, 'No secret was found.'),
        typeof reached === 'number'
          ? h('div', { class: reached ? 'bad' : 'sub' }, reached ? `${plural(reached, 'secret')} reached the provider unmasked` : 'none reached the provider')
          : null)));
}

function statementVerdict(s) {
  if (s.reached_target === false || (s.guardrail && s.guardrail.action)) {
    const g = s.guardrail || {};
    return h('span', { class: `decision decision-${g.action}` },
      `${actionLabel(g.action)} by rule ${g.rule || '?'}${g.approval ? ` (request ${g.approval})` : ''}`);
  }
  const o = s.outcome || {};
  if (o.tag) return h('span', { class: 'decision decision-allow' }, `ran: ${o.tag}${o.rows !== undefined && o.rows !== null ? `, ${plural(o.rows, 'row')}` : ''}`);
  if (o.error) return h('span', { class: 'decision decision-deny' }, `failed: ${o.error}`);
  return h('span', { class: 'decision' }, 'sent');
}

function secretVerdict(s) {
  return [
    s.masked_before_storage === false ? h('span', { class: 'bad' }, 'STORED unmasked') : 'masked before storage',
    ', ',
    s.masked_before_provider === true ? 'masked before the provider'
      : s.masked_before_provider === false ? h('span', { class: 'bad' }, 'REACHED the provider') : 'from the model',
    s.where ? h('span', { class: 'muted' }, ` (at ${describe(s.where)})`) : null,
  ];
}

function chainItem(cls, at, title, ...content) {
  return h('div', { class: `chain-item ${cls}` },
    h('div', { class: 'chain-meta' }, h('span', { class: 'ev-time', title: fmtTime(at) }, fmtClock(at)), ' ', title),
    h('div', { class: 'chain-body' }, content));
}

function roleName(role) {
  return { user: 'human', tool: 'tool result', assistant: 'AI', system: 'system' }[role] || role || '?';
}

function turnItem(t) {
  const messages = (t.new_messages || []).map((m) => h('div', { class: `msg msg-${m.role}` },
    h('span', { class: 'who' }, roleName(m.role)), h('div', { class: 'text' }, masked(m.text))));
  const ans = t.answer || null;
  return chainItem('turn', t.at, h('span', null, 'turn', t.seq !== undefined ? ` #${t.seq}` : '', t.model ? ` to ${t.model}` : ''),
    messages,
    ans && ans.text ? h('div', { class: 'msg msg-assistant' }, h('span', { class: 'who' }, 'AI'), h('div', { class: 'text' }, masked(ans.text))) : null,
    ans && ans.error ? errorBox(new ApiError(ans.status || 0, 'provider_error', describe(ans.error))) : null);
}

function proposalItem(p) {
  const args = typeof p.arguments === 'string' ? p.arguments : JSON.stringify(p.arguments);
  return chainItem('proposal', p.at, h('span', null, 'AI proposed', p.seq !== undefined ? ` in #${p.seq}` : ''),
    h('div', null, h('strong', null, p.tool || '?'), ' ', h('code', null, masked(args))));
}

function commandItem(cmd) {
  const by = cmd.proposed_by && cmd.proposed_by.seq !== undefined ? `proposed by the AI in #${cmd.proposed_by.seq}` : 'not proposed in this chain';
  const statements = (cmd.statements || []).map((s) => h('li', null, h('code', null, masked(s.sql || '')), ' → ', statementVerdict(s)));
  const args = typeof cmd.arguments === 'string' ? cmd.arguments : JSON.stringify(cmd.arguments);
  return chainItem('command', cmd.at,
    h('span', null, h('strong', null, cmd.tool || '?'), ` on ${cmd.connection || '?'} by ${cmd.identity || '?'} (${by})`),
    h('div', { class: 'small muted' }, masked(args)),
    statements.length ? h('ul', { class: 'statements' }, statements) : null,
    cmd.outcome ? h('details', { class: 'more' }, h('summary', null, 'outcome'), h('pre', { class: 'json' }, masked(JSON.stringify(cmd.outcome, null, 2)))) : null);
}

function secretItem(s) {
  return chainItem('secret', s.at, h('span', null, h('span', { class: 'tag warn' }, 'secret'), ` in ${s.event || '?'} #${s.seq ?? '?'}`),
    h('div', null, h('strong', null, s.detector || '?'), s.fingerprint ? [' ', h('code', { class: 'fp' }, s.fingerprint)] : null),
    h('div', null, secretVerdict(s)));
}

// ---------------------------------------------------------------------------------------------
// Approvals

/// Reads a server-sent event stream with fetch (EventSource cannot send the bearer header): calls
/// `onEvent(name, data)` for each event until the stream ends or `signal` aborts.
async function readEventStream(path, signal, onOpen, onEvent) {
  const response = await fetch(API + path, { headers: authHeaders({ Accept: 'text/event-stream' }), signal, cache: 'no-store' });
  if (!response.ok) throw await errorOf(response);
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

async function pageApprovals({ root, signal }) {
  document.title = 'Approvals · Proctor';
  const live = h('span', { class: 'live off', id: 'live' }, 'connecting…');
  root.append(h('h1', null, 'Approvals ', live));
  root.append(h('p', { class: 'muted' }, 'Statements and commands held by a guardrail wait here for an approver. The list updates live.'));
  const flash = h('div', { id: 'approvals-flash' });
  const table = new ApprovalsTable(flash);
  root.append(flash, table.el);
  const decided = h('section', { id: 'decided' });
  root.append(h('h2', null, 'Recently decided'), decided);

  const refreshDecided = async () => {
    try {
      const all = await api('/approvals?status=all', { signal });
      const rows = (all.approvals || []).filter((x) => x.status !== 'pending').slice(0, 20);
      decided.replaceChildren(rows.length ? decidedTable(rows) : h('p', { class: 'empty' }, 'None yet.'));
    } catch (e) {
      if (e.name !== 'AbortError') decided.replaceChildren(errorBox(e));
    }
  };

  let retry = 1000;
  const streamError = h('div');
  root.insertBefore(streamError, flash);
  while (!signal.aborted) {
    try {
      await readEventStream('/approvals/stream', signal, () => {
        live.textContent = '● live';
        live.className = 'live on';
        streamError.replaceChildren();
        retry = 1000;
      }, (name, data) => {
        if (name !== 'approvals') return;
        let parsed;
        try {
          parsed = JSON.parse(data);
        } catch {
          return;
        }
        table.update(parsed.approvals || []);
        refreshDecided();
      });
      if (signal.aborted) return;
      live.textContent = 'disconnected, reconnecting…';
      live.className = 'live off';
    } catch (e) {
      if (e.name === 'AbortError' || signal.aborted) return;
      live.textContent = 'not live';
      live.className = 'live off';
      streamError.replaceChildren(errorBox(e));
      if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404)) {
        // Without the right to read the queue, retrying will not help; show what can be shown.
        await refreshDecided();
        return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, retry));
    retry = Math.min(retry * 2, 15000);
  }
}

class ApprovalsTable {
  constructor(flash) {
    this.flash = flash;
    this.rows = new Map();
    this.body = h('tbody');
    this.empty = h('p', { class: 'empty', id: 'no-approvals' }, 'Nothing waits for approval.');
    this.table = h('table', { class: 'list approvals', id: 'approvals' },
      h('thead', null, h('tr', null, ['Requested', 'Who, where', 'Statement', 'Rule', 'Approvers', 'Expires', 'Decision'].map((t) => h('th', null, t)))),
      this.body);
    this.el = h('div', null, this.table, this.empty);
    this.table.hidden = true;
  }

  update(approvals) {
    const ids = new Set(approvals.map((a) => a.id));
    for (const [id, row] of this.rows) {
      if (!ids.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    for (const a of approvals) {
      const known = this.rows.get(a.id);
      if (known) {
        known.update(a);
      } else {
        const row = new ApprovalRow(a, this.flash);
        this.rows.set(a.id, row);
        this.body.prepend(row.tr);
      }
    }
    // Newest first, as the server sends them.
    for (const a of [...approvals].reverse()) this.body.prepend(this.rows.get(a.id).tr);
    this.table.hidden = this.rows.size === 0;
    this.empty.hidden = this.rows.size !== 0;
  }
}

class ApprovalRow {
  constructor(a, flash) {
    this.flash = flash;
    this.reason = h('input', { type: 'text', class: 'reason', placeholder: 'reason (optional)', size: 18 });
    this.approve = h('button', { type: 'button', class: 'approve' }, 'Approve');
    this.deny = h('button', { type: 'button', class: 'deny' }, 'Deny');
    this.approve.addEventListener('click', () => this.decide('approve'));
    this.deny.addEventListener('click', () => this.decide('deny'));
    this.error = h('div', { class: 'row-error' });
    this.status = h('span', { class: 'status' });
    this.expires = h('td', { class: 'small' });
    this.tr = h('tr', { class: 'approval-row', dataset: { id: a.id } },
      h('td', null, fmtTime(a.requested_at), h('div', { class: 'muted small' }, a.id)),
      h('td', null, h('strong', null, a.identity), h('div', null, a.connection),
        a.session_id ? h('div', { class: 'small' }, h('a', { href: `#/sessions/${encodeURIComponent(a.session_id)}` }, 'session')) : null),
      h('td', null, h('pre', { class: 'sql statement' }, masked(a.statement))),
      h('td', null, h('code', null, a.rule), a.kind ? h('span', { class: 'tag' }, a.kind) : null,
        (a.flags || []).map((f) => h('span', { class: 'tag' }, f))),
      h('td', { class: 'small' }, (a.approvers || []).join(', ') || '—'),
      this.expires,
      h('td', { class: 'decide' }, this.status, this.reason, h('div', { class: 'buttons' }, this.approve, this.deny), this.error));
    this.update(a);
  }

  update(a) {
    this.a = a;
    this.status.textContent = a.status === 'pending' ? '' : a.status;
    this.status.className = `status decision decision-${a.status}`;
    this.status.hidden = a.status === 'pending';
    this.expires.textContent = a.expires_at ? fmtTime(a.expires_at) : '—';
    const open = a.status === 'pending';
    this.approve.disabled = !open || this.busy;
    this.deny.disabled = !open || this.busy;
    this.reason.hidden = !open;
  }

  async decide(verb) {
    this.error.replaceChildren();
    this.busy = true;
    this.update(this.a);
    const reason = this.reason.value.trim();
    try {
      const decided = await api(`/approvals/${encodeURIComponent(this.a.id)}/${verb}`, {
        method: 'POST',
        body: reason ? { reason } : {},
      });
      this.busy = false;
      this.update(decided);
      this.flash.replaceChildren(h('div', { class: 'notice', role: 'status' },
        `Request ${decided.id} ${decided.status} by ${decided.decided_by || me?.identity || 'you'}.`));
    } catch (e) {
      this.busy = false;
      this.update(this.a);
      showError(this.error, e);
    }
  }
}

function decidedTable(rows) {
  return h('table', { class: 'list' },
    h('thead', null, h('tr', null, ['Requested', 'Who, where', 'Statement', 'Rule', 'Status', 'Decided'].map((t) => h('th', null, t)))),
    h('tbody', null, rows.map((a) => h('tr', null,
      h('td', null, fmtTime(a.requested_at), h('div', { class: 'muted small' }, a.id)),
      h('td', null, h('strong', null, a.identity), h('div', null, a.connection)),
      h('td', null, h('pre', { class: 'sql statement' }, masked(a.statement))),
      h('td', null, h('code', null, a.rule)),
      h('td', null, h('span', { class: `decision decision-${a.status}` }, a.status)),
      h('td', { class: 'small' }, a.decided_by ? [h('strong', null, a.decided_by), ` ${fmtTime(a.decided_at)}`] : '—',
        a.reason ? h('div', null, masked(a.reason)) : null)))));
}

// ---------------------------------------------------------------------------------------------

window.addEventListener('hashchange', render);
render();
