// Typed handles over koffi's untyped pointers. koffi 3 gives every pointer as a bigint and would pass a
// dom-image pointer where an xc_interface is expected without complaint; the brands make that a compile error.
declare const handleBrand: unique symbol;

export type Handle<Kind extends string> = bigint & { readonly [handleBrand]: Kind };
/** xc_interface * from xc_interface_open. */
export type XcInterfaceHandle = Handle<'xc_interface'>;
/** struct xc_dom_image * from xc_dom_allocate. */
export type XcDomImageHandle = Handle<'xc_dom_image'>;
/** A registered koffi callback (a C function pointer), to be unregistered after use. */
export type CallbackHandle = Handle<'callback'>;

/** Brands a raw pointer; null and 0 stay null so callers must handle allocation failure. */
export function asHandle<Kind extends string>(raw: unknown): Handle<Kind> | null {
  if (raw === null || raw === undefined) return null;
  if (typeof raw !== 'bigint') throw new TypeError(`expected a pointer (bigint), got ${typeof raw}`);
  return raw === 0n ? null : (raw as Handle<Kind>);
}
