"""Run the grid search on a local cluster: ``python -m quickstart``."""

from distributed import Client, LocalCluster

from quickstart.grid_search import grid_search

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        result = grid_search(client)
        print(f"best alpha: {result.best_alpha:.4g}  (mse {result.errors[result.best_alpha]:.4f})")
