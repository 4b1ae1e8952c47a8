/**
 * The fake OpenAI server (`src/testing/fake-openai-server.ts`) in a process of its own, for the
 * benchmark. It tells the parent its URL (`ready` notice), then, for every request whose last
 * message starts with `cancel-`, when the request's socket closed (`upstream-closed` notice, with a
 * CLOCK_MONOTONIC timestamp that the client processes share), so that the parent can measure
 * "cancel → the upstream sees the socket close".
 *
 * @packageDocumentation
 */
import { createFakeOpenAIServer, type FakeRequest } from '../src/testing/fake-openai-server.js';
import { monotonicNs, notifyParent, serveTasks, type WorkerTask } from './worker-process.js';

/** A tag that the parent waits for: the content of the request's last message. */
export const CANCEL_TAG_PREFIX = 'cancel-';

/** Notice sent when a tagged request's socket closed. */
export interface UpstreamClosedNotice {
  type: 'upstream-closed';
  tag: string;
  closedAt: bigint;
  /** True when the client went away before the server finished its answer. */
  clientAborted: boolean;
}

function lastMessage(request: FakeRequest): string {
  const messages = request.body.messages;
  if (!Array.isArray(messages)) return '';
  const last = messages.at(-1) as { content?: unknown } | undefined;
  return typeof last?.content === 'string' ? last.content : '';
}

const server = await createFakeOpenAIServer();

async function watchRequests(): Promise<void> {
  for (;;) {
    let request: FakeRequest;
    try {
      request = await server.nextRequest();
    } catch {
      return; // the server closed
    }
    const tag = lastMessage(request);
    if (!tag.startsWith(CANCEL_TAG_PREFIX)) continue;
    void request.closed.then(() => {
      const closedAt = monotonicNs();
      notifyParent({ type: 'upstream-closed', tag, closedAt, clientAborted: request.clientAborted });
    });
  }
}
void watchRequests();

serveTasks(
  (task: WorkerTask) => {
    if (task.type === 'usage') {
      const { userCPUTime, systemCPUTime, maxRSS } = process.resourceUsage();
      return Promise.resolve({ cpuUs: userCPUTime + systemCPUTime, maxRssBytes: maxRSS * 1024 });
    }
    return Promise.reject(new Error(`unknown task ${task.type}`));
  },
  () => server.close(),
);
notifyParent({ type: 'ready', url: server.url });
