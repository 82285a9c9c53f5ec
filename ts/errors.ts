/**
 * Morgana's typed errors. Every error thrown by Morgana carries a stable `code` that callers can
 * switch on; messages may change, codes do not.
 * @module
 */
import { native } from './native.js';

/** An error with a stable machine-readable code, such as `ERR_IPV4_TRUNCATED`. */
export class MorganaError extends Error {
  /** Stable code. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MorganaError';
    this.code = code;
  }
}

/**
 * Thrown when a packet with Don't Fragment set is larger than the MTU. `mtu` is what the sender
 * must fit (path-MTU discovery, RFC 1191).
 */
export class FragmentationNeededError extends MorganaError {
  /** The MTU the packet did not fit. */
  readonly mtu: number;

  constructor(mtu: number) {
    super('ERR_FRAGMENTATION_NEEDED', `packet larger than the MTU (${mtu}) has Don't Fragment set`);
    this.name = 'FragmentationNeededError';
    this.mtu = mtu;
  }
}

/** A function argument of the wrong type (code `ERR_INVALID_ARG_TYPE`, as Node uses). */
export class InvalidArgumentError extends TypeError {
  readonly code = 'ERR_INVALID_ARG_TYPE';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidArgumentError';
  }
}

/** A numeric argument outside its range (code `ERR_OUT_OF_RANGE`, as Node uses). */
export class OutOfRangeError extends RangeError {
  readonly code = 'ERR_OUT_OF_RANGE';
  constructor(message: string) {
    super(message);
    this.name = 'OutOfRangeError';
  }
}

const nativeErrors = native.errorCodes();

/** The error for a negative result of a native call. */
export function nativeFailure(result: number, context?: string): MorganaError {
  const info = nativeErrors[-result - 1];
  if (info === undefined) return new MorganaError('ERR_INTERNAL', `unknown native failure ${result}`);
  return new MorganaError(info.code, context ? `${context}: ${info.message}` : info.message);
}

/** Throws unless `value` is a Uint8Array (a Buffer is one). */
export function assertBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`${name} must be a Buffer or Uint8Array`);
  }
}

/** Throws unless `value` is an integer in [min, max]. */
export function assertInteger(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw new InvalidArgumentError(`${name} must be a number`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new OutOfRangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}
