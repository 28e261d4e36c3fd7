// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'scratch/', '.scalems/', '**/*.js', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      // prettier formats at 120; this catches what it cannot wrap (strings, comments). Test titles are
      // sentences a reader searches for: they stay whole.
      'max-len': [
        'error',
        {
          code: 120,
          ignoreRegExpLiterals: true,
          ignorePattern: String.raw`^\s*(it|test|describe|describeWithService)(\.each\(.*\))?\(`,
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
