// The core entry in a real browser (Chromium, no AsyncLocalStorage): the task context until the first
// await and the pattern past it, and idbStore's Web Lock between tabs. The scenarios run in the page:
// test/fixtures/browser/app.ts.
import type {} from './fixtures/browser/app';
import { browserApp, describeWithBrowser } from './support/browser';

describeWithBrowser('scalems in a browser (Chromium)', () => {
  const app = browserApp('test/fixtures/browser/app.ts');

  it('currentTask() works until the first await; after it, NoAmbientScopeError says to capture it first', async () => {
    const page = await app.page();
    const seen = await page.evaluate(() => window.scalemsTest.afterAwait());
    expect(seen.before).toEqual({ value: expect.any(String) });
    expect(seen.after).toEqual({
      error: expect.objectContaining({ name: 'NoAmbientScopeError', code: 'NO_AMBIENT_SCOPE' }),
    });
    const { message } = (seen.after as { error: { message: string } }).error;
    expect(message).toMatch(/in a browser/i);
    expect(message).toMatch(/first await/);
    expect(message).toContain('const task = currentTask()');
    expect(message).toContain('task.submit');
    expect(message).not.toMatch(/only available inside a running task: call it from the task function/);
    // submit() after the first await: the same advice
    expect((seen.submit as { error: { message: string } }).error.message).toContain('const task = currentTask()');
    // and outside any task, the same error
    expect(seen.outside).toEqual({ error: expect.objectContaining({ name: 'NoAmbientScopeError' }) });
  });

  it('nested submission through the captured currentTask() on a one-core executor cannot deadlock', async () => {
    const page = await app.page();
    expect(await page.evaluate(() => window.scalemsTest.nested())).toEqual({ value: [22, 2, 4, 6] });
  });

  it('a second tab opening the same idbStore gets StoreLockedError until the first closes it', async () => {
    const tabs = await app.context(); // one profile: its tabs share IndexedDB and Web Locks
    const [first, second] = [await app.page(tabs), await app.page(tabs)];
    expect(await first.evaluate(() => window.scalemsTest.openStore('x'))).toEqual({ value: 42 });
    const refused = await second.evaluate(() => window.scalemsTest.openStore('x'));
    expect(refused).toEqual({
      error: expect.objectContaining({ name: 'StoreLockedError', code: 'STORE_LOCKED' }),
    });
    const { message } = (refused as { error: { message: string } }).error;
    expect(message).toContain('indexeddb:x/scalems');
    expect(message).toMatch(/another tab or worker of this origin/);
    expect(message).toContain(new URL(app.url).origin);
    await first.evaluate(() => window.scalemsTest.closeStore('x'));
    expect(await second.evaluate(() => window.scalemsTest.openStore('x'))).toEqual({ value: 42 });
    // a store of another name is not locked by it
    expect(await first.evaluate(() => window.scalemsTest.openStore('y'))).toEqual({ value: 42 });
  });

  it('a page that is not a secure context (no Web Locks) is refused an idbStore unless it says unlocked', async () => {
    const page = await app.page(undefined, 'http://app.test');
    expect(await page.evaluate(() => window.isSecureContext)).toBe(false);
    const refused = await page.evaluate(() => window.scalemsTest.openStore('h'));
    expect(refused).toEqual({ error: expect.objectContaining({ name: 'StoreAccessError', code: 'STORE_ACCESS' }) });
    const { message } = (refused as { error: { message: string } }).error;
    expect(message).toMatch(/http:\/\/app\.test is not a secure context.*overwriting its records/);
    expect(await page.evaluate(() => window.scalemsTest.openStore('h', { unlocked: true }))).toEqual({ value: 42 });
  });

  it('an idbStore whose upgrade another connection to the database blocks gets StoreLockedError, not a hang', async () => {
    const tabs = await app.context();
    const [other, page] = [await app.page(tabs), await app.page(tabs)];
    expect(await other.evaluate(() => window.scalemsTest.holdDatabase('shared'))).toEqual({ value: 'held' });
    const refused = await page.evaluate(() => window.scalemsTest.openStore('shared'));
    expect(refused).toEqual({ error: expect.objectContaining({ name: 'StoreLockedError', code: 'STORE_LOCKED' }) });
    expect((refused as { error: { message: string } }).error.message).toMatch(/version upgrade.*blocks/);
    await other.close(); // its connection goes with it
    expect(await page.evaluate(() => window.scalemsTest.openStore('shared'))).toEqual({ value: 42 });
  });
});
