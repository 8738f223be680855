// The console in a real browser: Debian's headless Chromium, driven by playwright-core. Run by
// tests/console_browser.rs, which starts Proctor, records the sessions and holds a statement, then
// checks that the held client finished. Everything comes from the environment:
//
//   PROCTOR_CONSOLE_URL             the console, e.g. http://127.0.0.1:8080/
//   PROCTOR_CONSOLE_TOKEN           a token of an admin or auditor
//   PROCTOR_CONSOLE_APPROVER_TOKEN  a token of an approver of the held statement
//   PROCTOR_CONSOLE_IDENTITY        the identity to filter the sessions on
//   PROCTOR_CONSOLE_SESSION         the id of a session of that identity recorded from psql
//   PROCTOR_CONSOLE_OTHER_SESSION   (optional) a session of another identity, which the filter hides
//   PROCTOR_CONSOLE_STATEMENT       a statement of that session, as its timeline and replay show it
//   PROCTOR_CONSOLE_MASKED          (optional) "1": the session's timeline shows a masked value
//   PROCTOR_CONSOLE_HELD            text of the statement waiting for approval
//   PROCTOR_CONSOLE_SSH_SESSION     (optional) an SSH session to replay
//   PROCTOR_CONSOLE_SSH_TEXT        (with it) text its terminal shows
//   PROCTOR_CONSOLE_SCREENSHOTS     the directory for a PNG of each page
//   PROCTOR_CONSOLE_CHROMIUM        (optional) the browser, /usr/bin/chromium by default
//
// Exits 0 when every step passed; otherwise prints the step that failed and why, saves
// failure.png, and exits 1.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name, { optional = false } = {}) {
  const value = process.env[name];
  if (!value && !optional) {
    console.error(`console.mjs: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return value || '';
}

const url = env('PROCTOR_CONSOLE_URL');
const auditorToken = env('PROCTOR_CONSOLE_TOKEN');
const approverToken = env('PROCTOR_CONSOLE_APPROVER_TOKEN');
const identity = env('PROCTOR_CONSOLE_IDENTITY');
const sessionId = env('PROCTOR_CONSOLE_SESSION');
const otherSession = env('PROCTOR_CONSOLE_OTHER_SESSION', { optional: true });
const statement = env('PROCTOR_CONSOLE_STATEMENT');
const expectMasked = env('PROCTOR_CONSOLE_MASKED', { optional: true }) === '1';
const held = env('PROCTOR_CONSOLE_HELD');
const sshSession = env('PROCTOR_CONSOLE_SSH_SESSION', { optional: true });
const sshText = env('PROCTOR_CONSOLE_SSH_TEXT', { optional: true });
const shots = env('PROCTOR_CONSOLE_SCREENSHOTS');
const executablePath = env('PROCTOR_CONSOLE_CHROMIUM', { optional: true }) || '/usr/bin/chromium';

const origin = new URL(url).origin;
const TIMEOUT = 30000;
fs.mkdirSync(shots, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'proctor-console-chromium-'));

let step = 'starting Chromium';
const problems = [];
const saved = [];

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

async function shot(page, name) {
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  saved.push(file);
  console.log(`screenshot ${file}`);
}

async function signIn(page, token, who) {
  step = `signing in as ${who}`;
  await page.goto(`${url}#/signin`);
  await page.fill('#token', token);
  await page.click('#signin button[type=submit]');
  // The console goes on to the role's first page; the header names the identity.
  await page.waitForFunction(() => !location.hash.startsWith('#/signin') || document.querySelector('#me'), null, { timeout: TIMEOUT });
  await page.waitForFunction((name) => document.querySelector('#whoami .who')?.textContent === name, who, { timeout: TIMEOUT });
}

async function text(locator) {
  return (await locator.innerText()).replace(/\s+/g, ' ');
}

async function replayShows(page, wanted, name) {
  await page.waitForSelector('#player .ap-player', { timeout: TIMEOUT });
  await page.click('button.speed[data-speed="4"]');
  await page.waitForSelector('#player .ap-player', { timeout: TIMEOUT });
  await page.click('#play');
  try {
    await page.waitForFunction((w) => document.querySelector('#player')?.innerText.includes(w), wanted, { timeout: 60000 });
  } catch {
    throw new Failure(`the player never showed ${JSON.stringify(wanted)}; it shows: ${JSON.stringify(await page.innerText('#player'))}`);
  }
  await shot(page, name);
}

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1360, height: 900 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(TIMEOUT);
// What the console must never do: fail a script, break its policy, or reach past its own origin.
page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
page.on('console', (m) => {
  if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
});
page.on('request', (r) => {
  const u = r.url();
  if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:')) {
    problems.push(`a request outside the console's origin: ${u}`);
  }
});

let failed = null;
try {
  // 1. Sign in (as an auditor or admin) and see who we are.
  step = 'opening the console';
  const served = await page.goto(url);
  check(served && served.ok(), `the console is not served at ${url}: HTTP ${served && served.status()}`);
  await page.waitForSelector('#signin');
  check(page.url().includes('#/signin'), `the console without a token should ask to sign in; it is at ${page.url()}`);
  await shot(page, '01-sign-in');
  await signIn(page, auditorToken, (await whoIs(auditorToken)).identity);

  // 2. The sessions, filtered on an identity: the psql session is there, the other one is not.
  step = 'listing the sessions';
  await page.goto(`${url}#/sessions`);
  await page.waitForSelector('#sessions, .empty');
  if (otherSession) {
    await page.waitForSelector(`tr.session-row[data-id="${otherSession}"]`);
  }
  step = `filtering the sessions on identity ${identity}`;
  await page.fill('#session-filters input[name=identity]', identity);
  await page.click('#session-filters button[type=submit]');
  await page.waitForFunction((who) => location.hash.includes(`identity=${encodeURIComponent(who)}`), identity);
  const row = page.locator(`tr.session-row[data-id="${sessionId}"]`);
  await row.waitFor();
  const identities = await page.locator('tr.session-row td:nth-child(2)').allInnerTexts();
  check(identities.length > 0 && identities.every((t) => t.trim().startsWith(identity)),
    `the filtered list shows other identities: ${JSON.stringify(identities)}`);
  if (otherSession) {
    check(await page.locator(`tr.session-row[data-id="${otherSession}"]`).count() === 0,
      `the filter on ${identity} still shows session ${otherSession}`);
  }
  await shot(page, '02-sessions-filtered');

  // 3. The session: its statements in the timeline, and a verified badge.
  step = `opening session ${sessionId}`;
  await row.locator('a.session-link').click();
  await page.waitForFunction((id) => location.hash === `#/sessions/${id}`, sessionId);
  await page.waitForFunction(() => /\d+ events?$/.test(document.querySelector('#timeline-progress')?.textContent || ''));
  const timeline = await text(page.locator('#timeline'));
  check(timeline.includes(statement.replace(/\s+/g, ' ')), `the timeline does not show the statement ${JSON.stringify(statement)}: ${timeline.slice(0, 2000)}`);
  if (expectMasked) {
    check(await page.locator('#timeline mark.masked').count() > 0, 'the timeline marks no masked value');
  }
  step = 'checking the verification badge';
  const badge = page.locator('#verification-badge');
  await badge.waitFor();
  const verdict = (await badge.innerText()).trim();
  check(verdict === '✓ verified', `the verification badge says ${JSON.stringify(verdict)}, not "✓ verified"`);
  await badge.click();
  await page.waitForSelector('details.verify[open] ul.checks li');
  await shot(page, '03-session');

  // 4. Its replay: the client's screen shows the statement once played.
  step = `replaying session ${sessionId}`;
  await page.click('#replay-link');
  await replayShows(page, statement, '04-replay-psql');

  // 5. The AI chains page answers (an empty list is fine here).
  step = 'opening the AI chains';
  await page.goto(`${url}#/chains`);
  await page.waitForSelector('#chains, .empty');
  await shot(page, '05-chains');

  // 6. The approvals queue: the held statement waits; an auditor may not decide it.
  step = 'opening the approvals queue as an auditor';
  await page.goto(`${url}#/approvals`);
  await page.waitForSelector('#live.on');
  const waiting = page.locator('tr.approval-row', { hasText: held });
  await waiting.waitFor();
  await waiting.locator('button.approve').click();
  const refused = waiting.locator('.row-error .error');
  await refused.waitFor();
  const refusal = await refused.innerText();
  check(/403|forbidden/.test(refusal), `an auditor's approval should be refused with 403; the console shows ${JSON.stringify(refusal)}`);
  await shot(page, '06-approvals-auditor-refused');

  // 7. Signed in as the approver, approve it: the row leaves the live queue.
  step = 'signing out';
  await page.click('#signout');
  await page.waitForSelector('#signin');
  await signIn(page, approverToken, (await whoIs(approverToken)).identity);
  step = 'approving the held statement';
  await page.goto(`${url}#/approvals`);
  await page.waitForSelector('#live.on');
  const mine = page.locator('tr.approval-row', { hasText: held });
  await mine.waitFor();
  await shot(page, '07-approvals-pending');
  await mine.locator('input.reason').fill('approved in the browser test');
  await mine.locator('button.approve').click();
  const notice = page.locator('#approvals-flash .notice');
  await notice.waitFor();
  check((await notice.innerText()).includes('approved'), `the console says ${JSON.stringify(await notice.innerText())}`);
  step = 'waiting for the live queue to drop the approved request';
  await mine.waitFor({ state: 'detached' });
  await page.waitForSelector('#decided .decision-approved');
  await shot(page, '08-approvals-approved');

  // 8. An SSH session in the terminal player.
  if (sshSession) {
    step = 'signing in again to read the SSH session';
    await page.click('#signout');
    await page.waitForSelector('#signin');
    await signIn(page, auditorToken, (await whoIs(auditorToken)).identity);
    step = `opening SSH session ${sshSession}`;
    await page.goto(`${url}#/sessions/${sshSession}`);
    await page.waitForFunction(() => /\d+ events?$/.test(document.querySelector('#timeline-progress')?.textContent || ''));
    await page.waitForSelector('#verification-badge');
    await shot(page, '09-ssh-session');
    step = `replaying SSH session ${sshSession}`;
    await page.click('#replay-link');
    await replayShows(page, sshText, '10-replay-ssh');
  }

  step = 'checking the console stayed within its policy';
  check(problems.length === 0, problems.join('\n'));
} catch (e) {
  failed = e;
} finally {
  if (failed) {
    try {
      await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true });
      console.error(`screenshot of the failure: ${path.join(shots, 'failure.png')}`);
    } catch {
      // The page may be gone.
    }
  }
  await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}

if (failed) {
  console.error(`console test FAILED while ${step}: ${failed instanceof Failure ? failed.message : failed.stack || failed}`);
  if (problems.length) console.error(`also seen:\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(`console test passed: ${saved.length} screenshots in ${shots}`);

/// The identity behind a token, from the API (the page's header must then name it).
async function whoIs(token) {
  const response = await fetch(`${origin}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Failure(`/api/v1/me answered ${response.status} for a token of the test: ${await response.text()}`);
  return response.json();
}
