// scalems/node: Node-only parts. Importing it installs the AsyncLocalStorage context carrier.
import { installNode } from './context';

installNode();

export { installNode };
export { progress, progressLine, type Progress, type ProgressOptions } from '../cli/progress';
