const bytes = 512 * 1024 * 1024;
const buf = Buffer.alloc(bytes, 1);
const f64 = new Float64Array(buf.buffer, buf.byteOffset, bytes / 8);
function loop(): number { let a=0,b=0,c=0,d=0; for (let i=0;i<f64.length;i+=4){a+=f64[i]!;b+=f64[i+1]!;c+=f64[i+2]!;d+=f64[i+3]!;} return a+b+c+d; }
const f32 = new Float32Array(buf.buffer, buf.byteOffset, bytes / 4);
function loop32(): number { let a=0,b=0,c=0,d=0; for (let i=0;i<f32.length;i+=4){a+=f32[i]!;b+=f32[i+1]!;c+=f32[i+2]!;d+=f32[i+3]!;} return a+b+c+d; }
for (const [name, fn] of [['f64 loop', loop], ['f32 loop', loop32], ['memchr', () => buf.indexOf(7)], ['memcmp', () => Buffer.compare(buf.subarray(0, bytes/2), buf.subarray(bytes/2))], ['f64 indexOf', () => f64.indexOf(7)]] as const) {
  let best = Infinity;
  for (let r = 0; r < 4; r++) { const t = performance.now(); (fn as () => number)(); best = Math.min(best, performance.now() - t); }
  console.log(name, (bytes / best / 1e6).toFixed(2), 'GB/s');
}
