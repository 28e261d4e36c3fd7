// A CommonJS task module for the compiled library (dist/): see test/threads-example.test.ts.
const { join } = require('node:path');
const { defineTask } = require(join(__dirname, '..', '..', 'dist', 'src', 'node', 'auto.js'));

exports.triple = defineTask('dist.triple', (x) => 3 * x);
