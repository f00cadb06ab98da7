// A `BROWSER` for `custos db login`: headless Chromium (the system's `chromium`) opens
// the gateway's database sign-in URL, is sent to the IdP, signs in there, and follows the
// redirects back to the command line's listener on 127.0.0.1. Prints one JSON line (the
// listener's address and its answer) to stderr, for the test's log.
//
//   DB_LOGIN_USER=alice DB_LOGIN_PASSWORD=… [DB_LOGIN_OTP=…] node db-login.mjs URL
import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
const { DB_LOGIN_USER: user, DB_LOGIN_PASSWORD: password, DB_LOGIN_OTP: otp } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
  timeout: 30000,
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(url);
  const loginPage = page.url();
  await page.fill('#username', user);
  await page.fill('#password', password);
  if (otp) await page.fill('#otp', otp);
  await Promise.all([page.waitForURL((u) => u.pathname === '/callback'), page.click('#submit')]);
  const text = await page.textContent('body');
  // The listener's address only: its query holds the one-time code.
  const back = new URL(page.url());
  console.error(JSON.stringify({ loginPage, url: back.origin + back.pathname, text }));
} finally {
  await browser.close();
}
