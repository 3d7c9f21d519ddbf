package loadgen

// UserPool is the number of distinct users the benchmark datasets draw
// their likers from.
const UserPool = 2_000_000

// Splitmix is splitmix64's output function of z.
func Splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Permute is a bijection of [0, UserPool) keyed by key: a bijection of
// 21-bit words (odd multiplications, xor-shifts, additions) walked until it
// lands inside the pool. The datasets give post k the users Permute(r, k)
// for r = 0, 1, ...: distinct, spread over the pool.
func Permute(x, key uint32) uint32 {
	const mask = 1<<21 - 1
	k := uint32(Splitmix(uint64(key)))
	for {
		x = (x * 0x9e3779b1) & mask
		x ^= x >> 11
		x = (x + k) & mask
		x = (x * 0x85ebca6b) & mask
		x ^= x >> 10
		x = (x + k>>11) & mask
		if x < UserPool {
			return x
		}
	}
}
