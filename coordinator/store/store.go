package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the state file inside the state directory.
const FileName = "state.db"

// LockTimeout is how long Open waits for another coordinator to let go.
const LockTimeout = time.Second

var (
	// ErrLocked means another coordinator holds the state file.
	ErrLocked = errors.New("state is locked by another coordinator")
	// ErrNotFound means a record does not exist.
	ErrNotFound = errors.New("not found")
)

var (
	bucketNodes    = []byte("nodes")
	bucketJobs     = []byte("jobs")
	bucketTasks    = []byte("tasks")
	bucketAttempts = []byte("attempts")
	bucketTokens   = []byte("tokens")
	bucketCreds    = []byte("credentials")
	bucketMachines = []byte("machines")
	bucketRequests = []byte("machine_requests")
	bucketPools    = []byte("pools")
	// bucketMeta holds what is about the store itself (Probe's record).
	bucketMeta = []byte("meta")
	allBuckets = [][]byte{bucketNodes, bucketJobs, bucketTasks, bucketAttempts, bucketTokens, bucketCreds,
		bucketMachines, bucketRequests, bucketPools, bucketMeta}
	// legacyBuckets held log batches and acks before logs moved to
	// segment files; Open drops them.
	legacyBuckets = [][]byte{[]byte("acks"), []byte("logs")}
)

// LogDirName is the directory of the jobs' log files inside the state
// directory.
const LogDirName = "logs"

// Options tune a Store; the zero value has no limits.
type Options struct {
	// MaxLogBytes bounds one attempt's logs, its records' data and 13 bytes
	// per record together; 0 means no limit. See WriteLogs.
	MaxLogBytes int64
	// LogCapNote is the line that ends a log cut at MaxLogBytes.
	LogCapNote string
	// Fault, when set, is asked at each fault point of a Write or Probe
	// (FaultWrite, FaultSync) and of a log sync (FaultLogSync); an error it
	// returns fails that transaction, which writes nothing, or that sync,
	// as a full disk or a failed fsync would. For tests.
	Fault func(point string) error
}

// Store is the coordinator's bbolt file and its jobs' log files.
type Store struct {
	db     *bolt.DB
	logDir string
	opts   Options

	segMu sync.Mutex
	segs  map[segKey]*segment
	packs map[string]*pack // each job's log file (segMu)
	// dirs are the job log directories written by this process (segMu);
	// logNames syncs the names made in logDir.
	dirs     map[string]*jobDir
	logNames *dirSync
	// open holds the packs whose files appends hold open, at most openMax
	// (keepOpen); clock orders their last writes (segMu).
	open    map[*pack]struct{}
	openMax int
	clock   uint64
}

// openLogFiles is how many jobs' log files the store holds open between
// appends, those written last: a busy sweep's job appends a line or two
// per call, and opening its file for each was a tenth of that call's
// cost. More running jobs than this cost an open per append again.
const openLogFiles = 64

// keepOpen records that p's file was just written, and when more than
// openMax packs hold theirs open, closes the one written longest ago.
// Callers hold no pack's lock: closing waits for that pack's sync.
func (s *Store) keepOpen(p *pack) {
	s.segMu.Lock()
	s.clock++
	p.used = s.clock
	s.open[p] = struct{}{}
	var oldest *pack
	if len(s.open) > s.openMax {
		for q := range s.open {
			if oldest == nil || q.used < oldest.used {
				oldest = q
			}
		}
		delete(s.open, oldest)
	}
	s.segMu.Unlock()
	if oldest != nil {
		_ = oldest.closeFile() // its writes are synced or will be, by name
	}
}

// Open opens (or creates) dir/state.db and dir/logs. If another process
// holds the state, Open fails within LockTimeout with an error wrapping
// ErrLocked.
func Open(dir string) (*Store, error) {
	return OpenWith(dir, Options{})
}

// OpenWith is Open with options.
func OpenWith(dir string, opts Options) (*Store, error) {
	if opts.MaxLogBytes > 0 && opts.LogCapNote == "" {
		opts.LogCapNote = fmt.Sprintf("[cloudml] this attempt's logs reached the limit of %d bytes; the rest of its output is not kept\n", opts.MaxLogBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        LockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		for _, b := range legacyBuckets {
			if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	logDir := filepath.Join(dir, LogDirName)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		db.Close()
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	return &Store{db: db, logDir: logDir, opts: opts, segs: map[segKey]*segment{},
		packs: map[string]*pack{}, dirs: map[string]*jobDir{}, logNames: newDirSync(logDir),
		open: map[*pack]struct{}{}, openMax: openLogFiles}, nil
}

// Close closes the log files it holds open and the bbolt file, releasing
// its lock.
func (s *Store) Close() error {
	s.segMu.Lock()
	open := s.open
	s.open = map[*pack]struct{}{}
	s.segMu.Unlock()
	for p := range open {
		_ = p.closeFile()
	}
	return s.db.Close()
}

// Snapshot is everything but the logs, as Load read it.
type Snapshot struct {
	// Nodes, Jobs, Tasks and Attempts are every stored record, in key order.
	Nodes    []*Node
	Jobs     []*Job
	Tasks    []*Task
	Attempts []*Attempt
	// Tokens and Credentials are the join tokens and client credentials.
	Tokens      []*JoinToken
	Credentials []*Credential
}

// Load reads every node, job, task and attempt, with its acked log seq
// from its job's log file.
func (s *Store) Load() (*Snapshot, error) {
	snap := &Snapshot{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := loadAll(tx.Bucket(bucketNodes), &snap.Nodes); err != nil {
			return fmt.Errorf("nodes: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketJobs), &snap.Jobs); err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketTasks), &snap.Tasks); err != nil {
			return fmt.Errorf("tasks: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketAttempts), &snap.Attempts); err != nil {
			return fmt.Errorf("attempts: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketTokens), &snap.Tokens); err != nil {
			return fmt.Errorf("tokens: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketCreds), &snap.Credentials); err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	return snap, nil
}

func loadAll[T any](b *bolt.Bucket, out *[]*T) error {
	return b.ForEach(func(k, v []byte) error {
		r := new(T)
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("decode %q: %w", k, err)
		}
		*out = append(*out, r)
		return nil
	})
}

// Changes is a set of records to write in one transaction.
type Changes struct {
	// Nodes, Jobs, Tasks and Attempts are written (replaced) by key.
	Nodes    []*Node
	Jobs     []*Job
	Tasks    []*Task
	Attempts []*Attempt
	// Tokens and Credentials are written (replaced) by id and name.
	Tokens      []*JoinToken
	Credentials []*Credential
	// Machines, MachineRequests and Pools are written (replaced) by id
	// and name; the Drop lists name records of theirs to delete.
	Machines            []*Machine
	MachineRequests     []*MachineRequest
	Pools               []*Pool
	DropMachines        []string
	DropMachineRequests []string
	DropPools           []string
}

// Empty reports whether there is nothing to write.
func (c *Changes) Empty() bool {
	return len(c.Nodes)+len(c.Jobs)+len(c.Tasks)+len(c.Attempts)+len(c.Tokens)+len(c.Credentials)+c.fleetSize() == 0
}

// Save writes every record of c in one transaction.
func (s *Store) Save(c *Changes) error {
	if c.Empty() {
		return nil
	}
	b, err := Encode(c)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return s.Write(b)
}
