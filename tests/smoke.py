"Smoke test of an installed randsmooth: run from outside the repository, on the installed wheel only."
import torch, randsmooth
from pathlib import Path
from randsmooth.theory import certified_radius
from randsmooth.stats import lower_confidence_bound
from randsmooth.smooth import Smooth

assert 'site-packages' in str(Path(randsmooth.__file__)), f'not the installed package: {randsmooth.__file__}'
torch.manual_seed(0)
# a linear two-class base classifier on 2-d inputs; x is at distance 1 from its boundary
w = torch.tensor([1.0, 0.0])
base = lambda z: torch.stack([z @ w, -(z @ w)], dim=1)
smooth = Smooth(base, num_classes=2, sigma=0.5)
pred, radius = smooth.certify(torch.tensor([1.0, 0.0]), n0=100, n=10_000, alpha=0.001, batch_size=1000)
assert pred == 0 and 0.8 < radius < 1.0, (pred, radius)
assert abs(certified_radius(0.9, sigma=1.0) - 1.2815515655446004) < 1e-9
print(f'randsmooth {randsmooth.__version__} from {randsmooth.__file__}: class {pred}, radius {radius:.3f} (true 1.0)')
