export const NESTED = true;
