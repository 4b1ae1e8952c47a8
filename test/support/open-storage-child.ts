/**
 * Opens and closes storage on the data directory named by its argument, and prints `opened` or the
 * refusal's message: for tests of a directory as another user meets it. Run with `node --import tsx`.
 */
import { openStorage } from '../../src/runtime/open-storage.js';

try {
  const storage = await openStorage({ dataDir: process.argv[2]! });
  await storage.close();
  console.log('opened');
} catch (error) {
  console.log((error as Error).message);
}
