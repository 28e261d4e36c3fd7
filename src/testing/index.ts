/** `scalems/testing`: the virtual-time backend for marble tests. */
export { virtual, type VirtualOptions } from './virtual';
