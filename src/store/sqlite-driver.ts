/** better-sqlite3, the driver of `sqliteStore`: an optional peer dependency, loaded when a SQLite store opens. */
import type Database from 'better-sqlite3';
import { optionalDependency } from '../optional-dependency';

/** The better-sqlite3 constructor (loaded once); `MissingDependencyError` when it is not installed. */
export function sqliteDriver(feature = 'sqliteStore()', hint?: string): typeof Database {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return optionalDependency('better-sqlite3', '12', feature, () => require('better-sqlite3') as typeof Database, hint);
}

/** Where the driver is, for the writer thread, which loads it itself. */
export function sqliteDriverPath(): string {
  sqliteDriver();
  return require.resolve('better-sqlite3');
}
