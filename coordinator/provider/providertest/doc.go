// Package providertest helps test provider.Provider implementations and
// their callers: Fake is an in-memory provider with the failures a cloud
// API has (lost create responses, failed deletes), Preparing a Fake that
// is a provider.Preparer, and Contract the rules every provider must keep,
// run by each implementation's tests (local, netns, the fake; the
// DigitalOcean provider against its API test server).
package providertest
