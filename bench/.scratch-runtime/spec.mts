import { searchArchitecture } from '../../models/search/search.ts';
const r = searchArchitecture({ budgets: { params: 64e6 }, seed: 1, iterations: 20000 });
console.log(JSON.stringify(r.spec), r.params);
