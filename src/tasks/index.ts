export { TaskEngine, isFinished } from './engine.js';
export { runAtoms, type RunAtomsOptions } from './atoms.js';
export { abortable, abortableSleep } from './context.js';
export { taskMethods } from './methods.js';
export type { Atom, CancelTrigger, TaskContext, TaskEngineOptions, TaskWork, TaskRecord } from './types.js';
