import OpenAI, { APIUserAbortError } from 'openai';
import { monotonicNs } from '../worker-process.js';
import type { BenchClient, BenchClientOptions, RunOutcome } from './bench-client.js';

/**
 * The reference: the openai SDK runstate itself uses, called directly, with the same request the
 * runstate adapter sends (streamed, usage included, no SDK retries). Cancel is the SDK's `abort()`.
 */
export function createRawSdkClient({ upstreamURL, workloads }: BenchClientOptions): BenchClient {
  const client = new OpenAI({ apiKey: 'bench', baseURL: upstreamURL, maxRetries: 0 });

  async function stream(
    model: string,
    tag: string,
    signal: AbortSignal | undefined,
    onDelta: (chunks: number) => void,
  ): Promise<RunOutcome> {
    let content = '';
    let chunks = 0;
    let finishReason: string | null = null;
    try {
      const response = await client.chat.completions.create(
        {
          model,
          messages: [{ role: 'user', content: tag }],
          stream: true,
          stream_options: { include_usage: true },
        },
        { signal },
      );
      for await (const chunk of response) {
        const choice = chunk.choices[0];
        if (choice?.finish_reason) finishReason = choice.finish_reason;
        const delta = choice?.delta?.content;
        if (delta) {
          content += delta;
          onDelta(++chunks);
        }
      }
    } catch (error) {
      if (error instanceof APIUserAbortError || signal?.aborted) {
        return { status: 'cancelled', chunks, length: content.length };
      }
      const message = error instanceof Error ? error.message : String(error);
      return { status: 'failed', chunks, length: content.length, error: message };
    }
    if (signal?.aborted) return { status: 'cancelled', chunks, length: content.length };
    if (finishReason) return { status: 'completed', chunks, length: content.length };
    return {
      status: 'failed',
      chunks,
      length: content.length,
      error: 'the stream ended without a finish reason',
    };
  }

  return {
    run(workload, tag, onFirstChunk) {
      return stream(workloads[workload], tag, undefined, (chunks) => {
        if (chunks === 1) onFirstChunk?.();
      });
    },
    async cancelAfterFirstChunk(workload, tag) {
      const controller = new AbortController();
      let cancelAt: bigint | undefined;
      const outcome = await stream(workloads[workload], tag, controller.signal, () => {
        if (cancelAt !== undefined) return;
        cancelAt = monotonicNs();
        controller.abort();
      });
      const terminalAt = monotonicNs();
      if (cancelAt === undefined) throw new Error(`run ${tag} ended before its first chunk`);
      return { status: outcome.status, cancelAt, terminalAt };
    },
    close: () => Promise.resolve(),
  };
}
