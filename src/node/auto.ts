/**
 * `scalems` as resolved on Node (the "node" export condition): the core, with the Node context carrier installed.
 */
import { installNode } from './context';

installNode();

export * from '../index';
