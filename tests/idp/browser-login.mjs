// Drives headless Chromium (the system's `chromium`) through a real browser sign-in:
// open a protected page on the gateway, get sent to the IdP, fill in the form, land
// back on the page. Prints one JSON line: the final URL, the page's text and the
// gateway's cookies as the browser stored them.
//
//   node browser-login.mjs URL USER PASSWORD [OTP]
import { chromium } from 'playwright-core';

const [url, user, password, otp] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
  timeout: 30000,
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(url);
  const loginPage = page.url();
  await page.fill('#username', user);
  await page.fill('#password', password);
  if (otp) await page.fill('#otp', otp);
  await Promise.all([page.waitForURL((u) => u.toString().startsWith(new URL(url).origin) && !u.pathname.startsWith('/.custos/')), page.click('#submit')]);
  const text = await page.textContent('body');
  const cookies = (await context.cookies()).filter((c) => c.name.startsWith('custos') || c.name.startsWith('__Host-custos'));
  console.log(JSON.stringify({ loginPage, url: page.url(), text, cookies }));
} finally {
  await browser.close();
}
