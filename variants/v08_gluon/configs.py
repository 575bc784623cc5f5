"""The Gluon forward's launch choices per padded head dim (no autotuner: one launch per shape
class).

A program is two or three consumer warpgroups of 64 query rows (the wgmma M-tile): 128 or 192
rows, walking keys in tiles of BLOCK_N = 128 that all its consumers share. Shared memory bounds
the K/V ring: Q takes CONSUMERS x 64 x BLOCK_D and each stage a K and a V tile of 128 x BLOCK_D,
all 16-bit, within 227 KiB per program. At BLOCK_D = 128 that is 32 KiB + 64 KiB per stage: three
stages fit (224 KiB) but leave no room for a second program per SM, which no config here could
have anyway (the warpgroups' registers fill the file). Registers bound the consumers: a third one
at d=128 would hold a 64 x 128 fp32 accumulator and score tile in 160 registers (ptxas: 254
LDL/STL). Head dims above 128 are not taken: the 64 x 256 accumulator spills (201 LDL/STL).
"""

BLOCK_N = 128
# Registers per worker consumer, by consumer count: the default partition (a consumer too) gets
# what the others leave of 512 per thread-slot (64K / 128): 256 beside 232 + 24, 168 beside
# 160 + 160 + 24. 152 or 168 for three consumers spilled (20-32 and 4 LDL/STL at d=64).
CONSUMER_REGS = {2: 232, 3: 160}

# Stages of the K/V ring. Two: on an H200 three were within +-1% at d=64 and 16k-token d=128, and
# 9% slower at 4k-token causal d=128; four were 1-7% slower at d=64 (NOTES.md, run 2).
STAGES = 2
# Padded head dims the kernel takes (16-bit tiles need at least 16 columns for TMA and wgmma).
HEAD_DIMS = (16, 32, 64, 128)
# Consumer warpgroups per program by padded head dim: three (FA3's 192-row programs) up to d=64,
# where the softmax is a third of the time and a third warpgroup per SM hides more of it:
# +2-4% non-causal and +5-8% causal at 4k-16k tokens on an H200 (NOTES.md, run 11)...
CONSUMERS = {16: 3, 32: 3, 64: 3, 128: 2}
# ...but causal calls with fewer query rows take two: at 1024 tokens the last (longest) 192-row
# program has a third of its rows, and three consumers ran 7% slower there.
SHORT_CAUSAL = 2048


def tiles(block_d: int, n_q: int, causal: bool) -> dict:
    """The launch choices for a padded head dim, query length and mask."""
    consumers = 2 if causal and n_q < SHORT_CAUSAL else CONSUMERS[block_d]
    return {"STAGES": STAGES, "CONSUMERS": consumers}
