export const V3 = "v3_pack web folder from pyproject";
