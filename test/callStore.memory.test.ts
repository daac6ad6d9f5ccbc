import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { callStoreContract } from "./callStore.contract.js";

let n = 0;
callStoreContract("memory", async () => {
  const store = new MemoryCallStore();
  return { store, id: () => `mem-${++n}`, close: () => store.close() };
});
