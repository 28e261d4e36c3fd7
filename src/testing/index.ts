export { virtual, type VirtualOptions } from './virtual';
