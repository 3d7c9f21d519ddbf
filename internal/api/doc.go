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
// It depends only on the small interfaces it declares (Likes, Membership), so
// it can be tested against fakes and knows nothing of gossip or storage.
package api
