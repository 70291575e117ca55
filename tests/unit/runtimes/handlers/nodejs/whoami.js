// Says which runtime and interpreter run it.
exports.handler = async () => ({
  executionEnv: process.env.AWS_EXECUTION_ENV,
  version: process.versions.node,
});
