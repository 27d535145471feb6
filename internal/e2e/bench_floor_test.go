package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"lok8s.dev/provisioner/internal/mgmt"
)

// benchFloorAppliers is how many requests the reference sends at once.
const benchFloorAppliers = 32

// benchFloorClusters is how many of the service's clusters the reference
// creates again at most: enough for a steady rate, which it reports per
// cluster, without doubling the time of a run of thousands.
const benchFloorClusters = 200

// benchFloor is the reference BenchmarkProvisionMany measures beside the
// service: the objects the service applied for its clusters, created again
// in a namespace of their own by a bare client, many at once and without
// client-go's rate limit, the way the apply step creates them (create-only
// server-side apply, mgmt.Cluster.ApplyNew) or by a plain create. It is the
// most the management apiserver (and its etcd) does on this machine for the
// same work, with no service, Postgres or worker pipeline in the way: what
// "all applied" could be at best.
type benchFloor struct {
	how               string
	clusters, objects int
	took              time.Duration
	cpu               benchCPU
}

func (f benchFloor) String() string {
	if f.took <= 0 {
		return "not measured"
	}
	perSec := float64(f.clusters) / f.took.Seconds()
	return fmt.Sprintf("%s: %d clusters' %d objects created in %s by %d appliers with no client limit: %.0f objects/s, %.1f clusters/s (1,000 clusters would take %s); CPU per cluster: kube-apiserver %.1f ms, etcd %.1f ms",
		f.how, f.clusters, f.objects, f.took.Round(time.Millisecond), benchFloorAppliers, float64(f.objects)/f.took.Seconds(), perSec,
		time.Duration(1000/perSec*float64(time.Second)).Round(100*time.Millisecond),
		float64(f.cpu.apiserver)/float64(time.Millisecond)/float64(f.clusters), float64(f.cpu.etcd)/float64(time.Millisecond)/float64(f.clusters))
}

// applyFloor creates, in a new namespace, the objects the service rendered
// for its clusters (clusters.manifests; benchFloorClusters of them at
// most), and times it: with create-only server-side apply as the service
// does, or, with plainCreate, with a plain create (POST), which skips
// apply's field-set merge.
func (s *benchService) applyFloor(ctx context.Context, plainCreate bool) (benchFloor, error) {
	rows, err := s.db.Query(ctx, `SELECT manifests FROM clusters WHERE manifests IS NOT NULL AND manifests <> '' ORDER BY name LIMIT $1`, benchFloorClusters)
	if err != nil {
		return benchFloor{}, fmt.Errorf("read manifests: %w", err)
	}
	var objs []*unstructured.Unstructured
	f := benchFloor{how: "create-only server-side apply"}
	if plainCreate {
		f.how = "plain create"
	}
	namespace := randomName("bench-floor-")
	for rows.Next() {
		var manifests string
		if err := rows.Scan(&manifests); err != nil {
			rows.Close()
			return benchFloor{}, err
		}
		decoded, err := mgmt.DecodeObjects([]byte(manifests))
		if err != nil {
			rows.Close()
			return benchFloor{}, err
		}
		for _, o := range decoded {
			o.SetNamespace(namespace)
		}
		objs = append(objs, decoded...)
		f.clusters++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return benchFloor{}, err
	}
	f.objects = len(objs)

	cfg := rest.CopyConfig(s.env.Config)
	cfg.QPS = -1 // no client-side limit: the apiserver's pace alone
	mc, err := mgmt.NewCluster("bench-floor", cfg)
	if err != nil {
		return benchFloor{}, err
	}
	if err := mc.Client().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return benchFloor{}, fmt.Errorf("create namespace %s: %w", namespace, err)
	}

	create := mc.ApplyNew
	if plainCreate {
		create = func(ctx context.Context, obj *unstructured.Unstructured) error {
			return mc.Client().Create(ctx, obj.DeepCopy(), client.FieldOwner(mgmt.FieldManager))
		}
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	cpuStart := s.readCPU(ctx)
	start := time.Now()
	for range benchFloorAppliers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(objs)); i = next.Add(1) - 1 {
				if err := create(ctx, objs[i]); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	f.took = time.Since(start)
	f.cpu = s.readCPU(ctx).sub(cpuStart)
	return f, firstErr
}
