/**
 * OpenTelemetry for the tests of one file: an in-memory exporter behind a provider, and an
 * AsyncLocalStorage context manager enabled for the file's tests, as an application's SDK registers
 * one (a run span's parent is the context active when the run starts, and a step's span is active
 * while it runs). Call at the top of a test file.
 */
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll } from 'vitest';

export function useInMemoryTracing(): { exporter: InMemorySpanExporter; provider: BasicTracerProvider } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncLocalStorageContextManager();
  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable());
  });
  afterAll(async () => {
    context.disable();
    await provider.shutdown();
  });
  return { exporter, provider };
}
