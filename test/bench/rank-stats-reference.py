# Reference values for test/bench/rank-stats.test.ts: python3 test/bench/rank-stats-reference.py (scipy 1.17.1, numpy 2.4.6).
import numpy as np
from scipy import stats
x = [3.1, 2.0, 5.5, 5.5, 1.2, 4.4, 7.0, 2.0, 6.1, 0.5, 3.3, 4.4]
y = [2.9, 1.0, 4.0, 6.2, 1.5, 4.4, 5.0, 3.0, 6.1, 1.0, 2.2, 3.9]
print('tau_b', repr(stats.kendalltau(x, y).statistic))
print('rho', repr(stats.spearmanr(x, y).statistic))
print('ranks', stats.rankdata(x).tolist())
print('q', repr(float(np.quantile(x, 0.025))), repr(float(np.quantile(x, 0.975))), repr(float(np.quantile(x, 0.5))))
for name, f in [('tau', lambda a, b: stats.kendalltau(a, b).statistic), ('rho', lambda a, b: stats.spearmanr(a, b).statistic)]:
    r = stats.bootstrap((x, y), f, paired=True, vectorized=False, n_resamples=20000, method='percentile', confidence_level=0.95, random_state=np.random.default_rng(0))
    print(name, 'ci', repr(float(r.confidence_interval.low)), repr(float(r.confidence_interval.high)))
