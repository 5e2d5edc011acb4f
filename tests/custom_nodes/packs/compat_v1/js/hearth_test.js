// Loaded by the frontend from /extensions/compat_v1/hearth_test.js
export const HEARTH_TEST = "compat_v1 web extension";
