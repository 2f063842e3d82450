// Type names koffi's declarations use but do not all export.
import type { LibraryHandle, TypeObject } from 'koffi';
import type koffi from 'koffi';

export type { LibraryHandle, TypeObject };
export type KoffiFunction = ReturnType<LibraryHandle['func']>;
export type TypeSpec = Parameters<typeof koffi.sizeof>[0];
