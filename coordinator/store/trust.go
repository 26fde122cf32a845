package store

import "time"

// JoinToken is a join token's record. The token's secret is never stored,
// only its SHA-256.
type JoinToken struct {
	// ID is the token's id, the part of the token that names it.
	ID string `json:"id"`
	// SecretSHA256 is the hex SHA-256 of the token's secret.
	SecretSHA256 string `json:"secret_sha256"`
	// Label is the admin's note ("ci", "droplet fra1-3").
	Label string `json:"label,omitempty"`
	// CreatedBy is the credential that created it ("" for the coordinator's
	// own providers).
	CreatedBy string `json:"created_by,omitempty"`
	// CreateTime and ExpireTime bound its validity.
	CreateTime time.Time `json:"create_time"`
	ExpireTime time.Time `json:"expire_time"`
	// Uses is how many registrations it allows; 0 means any number until it
	// expires.
	Uses int32 `json:"uses"`
	// Used counts the registrations it made.
	Used int32 `json:"used"`
	// Revoked is set by RevokeJoinToken.
	Revoked bool `json:"revoked,omitempty"`
	// MaxSlots and MaxMemoryBytes cap what a node registered with it may
	// claim; 0 means the coordinator's defaults.
	MaxSlots       int32 `json:"max_slots,omitempty"`
	MaxMemoryBytes int64 `json:"max_memory_bytes,omitempty"`
	// Nodes are the ids of the nodes it registered.
	Nodes []string `json:"nodes,omitempty"`
}

// Credential is a client credential the coordinator issued. Its key never
// reaches the coordinator.
type Credential struct {
	// Name is the credential's name, its certificate's common name.
	Name string `json:"name"`
	// Role is "admin" or "client".
	Role string `json:"role"`
	// Serial is the hex serial number of its certificate; a certificate
	// with this name and another serial is refused.
	Serial string `json:"serial"`
	// CreatedBy is the credential that created it ("" for the admin
	// credential the coordinator writes itself).
	CreatedBy string `json:"created_by,omitempty"`
	// CreateTime and ExpireTime bound its certificate.
	CreateTime time.Time `json:"create_time"`
	ExpireTime time.Time `json:"expire_time"`
	// Revoked is set by RevokeCredential: every call with it is refused.
	Revoked bool `json:"revoked,omitempty"`
}
