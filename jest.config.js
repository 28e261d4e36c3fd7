/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: false }],
  },
  moduleNameMapper: {
    '^scalems$': '<rootDir>/src/node/auto.ts',
    '^scalems/node$': '<rootDir>/src/node/index.ts',
    '^scalems/testing$': '<rootDir>/src/testing/index.ts',
  },
  testTimeout: 30000,
};
