// Package api owns likesd's HTTP interface: routes, JSON shapes, input
// validation, and the mapping of every failure to a JSON error with the right
// status, in one place (errors.go).
//
// Bodies are read strictly (decode.go): what is stored is exactly what the
// client sent. Bulk imports (bulk.go) check each like as a single one and
// store through the same Likes.Like.
//
// Reads that carry a version token (version.go) wait, through
// Likes.WaitHas, until this node holds the like it names: read your writes
// across nodes behind a load balancer, bounded by Config.ReadWait.
//
// One client cannot take the node down: every label the Observer gets is
// from a closed set; headers, bodies and ids are bounded (Config); single
// likes, bulk imports and reads each have a bounded compartment, past which
// requests are refused with 429, never queued (shed.go), and bulk imports
// may be rate limited per client (ratelimit.go); past its memory Budget the
// node refuses new likes with 507 and serves the rest; writes, and reads if
// asked, may need API tokens (tokens.go). The operator's routes may have a
// listener of their own (admin.go).
//
// It depends only on the small interfaces it declares (Likes, Membership,
// Replicator, Budget), so it can be tested against fakes and knows nothing
// of gossip or storage.
package api
