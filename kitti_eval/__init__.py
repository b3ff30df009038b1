"""KITTI Eigen-split evaluation: ground truth from raw velodyne scans, depth metrics, GT cache."""
