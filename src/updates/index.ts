export { UpdatesLog, type UpdatesLogOptions, type GetOptions } from './log.js';
export { updatesMethods } from './methods.js';
