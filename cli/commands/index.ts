// The list of CLI commands. Each module exports `register(program)`; add new ones here.
import type { Command } from 'commander';
import { register as search } from './search.ts';
import { register as build } from './build.ts';
import { register as importModel } from './import.ts';
import { register as generate } from './generate.ts';
import { register as perplexity } from './perplexity.ts';
import { register as compress } from './compress.ts';
import { register as quantize } from './quantize.ts';
import { register as local } from './local.ts';
import { register as fleet } from './fleet.ts';
import { register as demo } from './demo.ts';
import { register as device } from './device.ts';
import { register as train } from './train.ts';

export const COMMANDS: ReadonlyArray<(program: Command) => void> = [
  search,
  build,
  importModel,
  generate,
  perplexity,
  compress,
  quantize,
  train,
  local,
  fleet,
  device,
  demo,
];
