/**
 * Paths in the config file name files beside it: `dataDir` and `toolsModule` are resolved relative
 * to the config file's directory, not to the directory runstate starts in.
 */
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/server/config-file.js';

const CONFIG = join('/srv', 'runstate', 'runstate.config.json');

describe('paths in the config file', () => {
  it('resolves a relative dataDir against the config file’s directory, as toolsModule', () => {
    const config = parseConfig(JSON.stringify({ dataDir: './runs', toolsModule: './tools.js' }), CONFIG);
    expect(config.dataDir).toBe(resolve('/srv/runstate/runs'));
    expect(config.toolsModule).toBe(resolve('/srv/runstate/tools.js'));
    // A config file named relative to the working directory: its directory, resolved from there.
    expect(parseConfig('{"dataDir": "runs"}', join('deploy', 'runstate.config.json')).dataDir).toBe(
      resolve('deploy', 'runs'),
    );
  });

  it('keeps an absolute dataDir, and adds no path the file does not set', () => {
    expect(parseConfig('{"dataDir": "/var/lib/runstate"}', CONFIG).dataDir).toBe(
      resolve('/var/lib/runstate'),
    );
    const config = parseConfig('{"port": 7777}', CONFIG);
    expect(config).toStrictEqual({ port: 7777 });
  });
});

describe('cors origins in the config file', () => {
  it("are origins as a browser sends them, or '*' alone: another spelling would match no page", () => {
    expect(parseConfig('{"cors": {"origins": ["http://localhost:5173"]}}', CONFIG).cors).toEqual({
      origins: ['http://localhost:5173'],
    });
    for (const [origins, shown] of [
      ['["*"]', "cors.origins.0: '*' allows every origin on its own: write origins: '*'"],
      ['["http://ui.example/"]', "cors.origins.0: 'http://ui.example/' matches no page"],
      ['["localhost:3000"]', "cors.origins.0: 'localhost:3000' is not an origin"],
    ] as const) {
      expect(() => parseConfig(`{"cors": {"origins": ${origins}}}`, CONFIG)).toThrow(shown);
    }
  });
});
