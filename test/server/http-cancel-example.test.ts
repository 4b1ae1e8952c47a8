import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { serveFake } from '../support/app.js';

const ROOT = join(import.meta.dirname, '../..');
const hasCurl = (() => {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('examples/http_cancel.sh', () => {
  it.skipIf(!hasCurl)(
    'starts a streamed run with curl, cancels it and shows the cancelled record',
    async () => {
      // The fake model never answers: the run streams until the script cancels it.
      const { url } = await serveFake();
      const { stdout } = await promisify(execFile)('bash', ['examples/http_cancel.sh'], {
        cwd: ROOT,
        env: { ...process.env, RUNSTATE_URL: url, CANCEL_AFTER: '0', RUNSTATE_SECURITY_KEY: '' },
        timeout: 15_000,
      });
      const runId = /^run (\S+) started$/m.exec(stdout)?.[1];
      expect(runId).toBeDefined();
      expect(stdout).toContain(`{"run_id":"${runId}","status":"cancelled"}`);
      expect(stdout).toContain('event: RunCancelled');
      expect(stdout).toContain('"reason":"api","status":"cancelled"');
      expect(stdout).toMatch(/"status":"cancelled".*"cancel_reason":"api"/);
    },
  );
});
