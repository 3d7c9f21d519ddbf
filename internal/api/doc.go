// Package api owns likesd's HTTP interface: routes, JSON shapes, input
// validation, and the mapping of every failure to a JSON error with the right
// status, in one place (errors.go).
//
// Bodies are read strictly (decode.go): what is stored is exactly what the
// client sent. Bulk imports (bulk.go) check each like as a single one and
// store through the same Likes.Like.
//
// It depends only on the small interfaces it declares (Likes, Membership), so
// it can be tested against fakes and knows nothing of gossip or storage.
package api
