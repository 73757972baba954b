// Figures the benches report: the median of rounds (the upper one of an even count, a value that was
// measured) and rounding for print.

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;
