"""Short real-world code / maths / prose prompts the MoE labs (2.4.3, 2.4.4) ship for the ``spark`` profile.

The tiny profile routes the tiny models' own validation corpus (MODELS_DIR/data/corpus/<domain>_valid.txt); a real
checkpoint gets these hand-written texts, one file per domain, so its expert x domain table means something.
"""

from __future__ import annotations

from pathlib import Path

DOMAIN_PROMPTS = {
    "code": """def binary_search(items, target):
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1

class LRUCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.store = OrderedDict()

    def get(self, key):
        if key not in self.store:
            return None
        self.store.move_to_end(key)
        return self.store[key]

for path in sorted(Path("logs").glob("*.json")):
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    print(path.name, len(records), sum(r["bytes"] for r in records))

SELECT user_id, COUNT(*) AS orders FROM orders WHERE created_at > '2024-01-01' GROUP BY user_id ORDER BY orders DESC;
const total = items.filter(x => x.active).map(x => x.price * x.qty).reduce((a, b) => a + b, 0);
""",
    "maths": r"""Let f(x) = 3x^2 - 12x + 7. Then f'(x) = 6x - 12, so the minimum is at x = 2 and f(2) = -5.
Solve 2x + 5 = 17: subtracting 5 gives 2x = 12, hence x = 6.
The sum of the first n odd numbers is n^2, since 1 + 3 + ... + (2n - 1) = n(2n)/2 = n^2.
If a matrix A has eigenvalues 2 and 3, then det(A) = 6 and tr(A) = 5.
The integral of x e^x dx equals x e^x - e^x + C, by integration by parts with u = x and dv = e^x dx.
For a fair die, P(sum of two rolls = 7) = 6/36 = 1/6, and the expected value of one roll is 3.5.
By the Cauchy-Schwarz inequality, |<u, v>| <= ||u|| ||v|| for all vectors u and v in R^n.
The geometric series 1 + r + r^2 + ... converges to 1/(1 - r) whenever |r| < 1.
Compute 17 * 23 = 391, 144 / 12 = 12, and 2^10 = 1024; gcd(84, 36) = 12 and lcm(4, 6) = 12.
A prime p > 3 satisfies p^2 = 1 (mod 24), because p^2 - 1 = (p - 1)(p + 1) is divisible by 8 and by 3.
""",
    "prose": """The rain had stopped by the time we reached the village, and the narrow streets smelled of wet stone and
woodsmoke. An old woman was sweeping the steps of the bakery, humming a song I half remembered from childhood.
We asked her the way to the harbour; she pointed past the church with her broom and told us to hurry, because the
last ferry of the day never waited for anyone.
Later that evening, sitting by the window of a small guesthouse, I wrote a long letter to my sister. I told her
about the mountains we had crossed, the friendly farmer who had shared his lunch with us, and the strange quiet of
the lake at dawn. Travel, I wrote, is mostly waiting and walking, but every so often a single afternoon stays with
you for the rest of your life.
The museum opens at nine on weekdays and at ten on Sundays. Visitors are asked to leave large bags at the desk,
and photography without flash is allowed in most galleries.
""",
}


def write_domain_prompts(folder: Path) -> None:
    """Write <folder>/<domain>.txt for each domain (the lab's spark-profile routing text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for domain, text in DOMAIN_PROMPTS.items():
        (folder / f"{domain}.txt").write_text(text)
