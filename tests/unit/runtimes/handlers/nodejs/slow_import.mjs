// Takes a while to load, as a module with heavy dependencies does: SLOW_IMPORT_MS milliseconds
// (1000 when unset), spent in a top-level await, so the runtime's event loop keeps turning.
await new Promise((resolve) => setTimeout(resolve, Number(process.env.SLOW_IMPORT_MS || '1000')));

export const handler = async (event) => event;

// Says how much time it had when it started, then works for event.ms.
export const timed = async (event, context) => {
  const atStart = context.getRemainingTimeInMillis();
  await new Promise((resolve) => setTimeout(resolve, event.ms || 0));
  return { remaining_at_start: atStart, remaining_at_end: context.getRemainingTimeInMillis() };
};
