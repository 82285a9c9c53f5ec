// Types of kv-crash-values.mjs (plain JS so that the crash test's child process runs without tsx).
export declare const SINGLE_KEYS: string[];
export declare const BATCH_KEYS: string[];
export declare const RECORD: number;
export declare const RECORDS: number;
export declare function valueFor(key: string, gen: number): Buffer;
export declare function checkValue(key: string, data: Buffer): number;
export declare function recordFor(r: number, gen: number): Buffer;
export declare function checkPartial(data: Buffer): Array<number | undefined>;
