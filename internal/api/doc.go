// Package api owns likesd's HTTP interface: routes, JSON shapes, input
// validation, and the mapping of every failure to a JSON error with the right
// status, in one place (errors.go).
//
// It depends only on the small interfaces it declares (Likes, Membership), so
// it can be tested against fakes and knows nothing of gossip or storage.
package api
