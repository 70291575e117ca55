'use strict';
// Logs at every level, for the JSON log format's tests (handlers/python/json_logs.py is the same
// in Python).

class BoomError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BoomError';
  }
}

exports.levels = async () => {
  console.debug('a debug record');
  console.info('an info record');
  console.warn('a warn record');
  console.error('an error record');
  console.fatal('a fatal record');
  console.log('a printed line');
  console.error('an exception record', new BoomError('caught and logged'));
  return {};
};

exports.fail = async () => {
  throw new BoomError('the handler failed on purpose');
};

exports.slow = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, event.ms || 0));
  return {};
};
